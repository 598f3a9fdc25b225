"""The parser on generated completions: split independence, latency and exact text accounting.

The invariant checked on every completion: cutting the completion into consecutive segments,
each either reasoning, content, a tool-call body or one consumed tag, rejoins the completion
exactly; and the parser's merged events are precisely its non-tag segments, in order. So every
character lands in exactly one of End.reasoning, End.content, a call's raw or a consumed tag.
The segments come from `reference`, a whole-text str.find implementation of the format's rules.
"""

from __future__ import annotations

import itertools
import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from glm_lsp.glm.parse import (
    ContentDelta,
    End,
    ParseError,
    ReasoningDelta,
    StreamParser,
    ToolCall,
    parse_completion,
    tool_call_text,
)
from glm_lsp.glm.tool_schemas import TOOLS

TAGS = ["<think>", "</think>", "<tool_call>", "</tool_call>"]
TAGS += ["<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>", "<|user|>"]
LONGEST_HOLD = len("<tool_call>") - 1  # the parser never holds back more text than this
FUZZ_COMPLETIONS = 5000
WORDS = ["read_file", "edit_file", "list_files", "nope", "path", "start_line", "old_text", "regex"]
WORDS += ["a.py", " 3 ", "true", "[1, 2]", '{"a": 1}', "\n  x\n", "1.5", "None", "'q'", "\\n", " "]
GARBAGE = "<>/_ \n\t\\abcehiklnoprstuv{}[]\"'0123456789é日\U0001f600"
ARGS = [{"path": "a.py"}, {"path": " b ", "start_line": 2}, {"file": "x"}, {"pattern": "p"}]
ARGS += [{"path": "a", "old_text": "\n x \n", "new_text": ""}, {"path": "a", "regex": "maybe"}, {}]


def random_completion(rng: random.Random) -> str:
    """Real markup, whole and cut anywhere, mixed with words, calls and garbage."""
    parts = []
    for _ in range(rng.randint(0, 24)):
        r = rng.random()
        if r < 0.3:
            parts.append(rng.choice(TAGS))
        elif r < 0.4:
            tag = rng.choice(TAGS)
            cut = rng.randint(1, len(tag) - 1)
            parts.append(rng.choice((tag[:cut], tag[cut:])))
        elif r < 0.55:
            parts.append(tool_call_text(rng.choice(WORDS[:4]), rng.choice(ARGS)))
        elif r < 0.8:
            parts.append(rng.choice(WORDS))
        else:
            parts.append("".join(rng.choices(GARBAGE, k=rng.randint(1, 12))))
    return "".join(parts)


def reference(text: str, in_reasoning: bool) -> list[tuple[str, str]]:
    """The completion cut into (kind, text) segments; kind "tag" marks a consumed tag."""
    segments: list[tuple[str, str]] = []
    state, i = ("reasoning" if in_reasoning else "content"), 0
    if in_reasoning and text.startswith("<think>"):
        segments.append(("tag", "<think>"))
        i = len("<think>")
    while True:
        if state == "reasoning":
            j = text.find("</think>", i)
            if j < 0:
                segments += [("reasoning", text[i:]), ("unclosed reasoning", "")]
                return segments
            segments += [("reasoning", text[i:j]), ("tag", "</think>")]
            state, i = "content", j + len("</think>")
            continue
        m = re.compile(r"<tool_call>|<think>").search(text, i)
        if m is None:
            segments.append(("content", text[i:]))
            return segments
        segments += [("content", text[i : m.start()]), ("tag", m.group())]
        i = m.end()
        if m.group() == "<think>":
            state = "reasoning"
            continue
        j = text.find("</tool_call>", i)
        if j < 0:
            segments.append(("unterminated call", text[i:]))
            return segments
        segments += [("call", text[i:j]), ("tag", "</tool_call>")]
        i = j + len("</tool_call>")


def merged(segments: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Adjacent reasoning (or content) pieces joined, empty ones dropped."""
    out: list[tuple[str, str]] = []
    for kind, text in segments:
        if kind in ("reasoning", "content"):
            if not text:
                continue
            if out and out[-1][0] == kind:
                out[-1] = (kind, out[-1][1] + text)
                continue
        out.append((kind, text))
    return out


def segments_of(events: list) -> list[tuple[str, str]]:
    """The parser's events as the reference's non-tag segments."""
    out: list[tuple[str, str]] = []
    for e in events:
        if isinstance(e, ReasoningDelta):
            out.append(("reasoning", e.text))
        elif isinstance(e, ContentDelta):
            out.append(("content", e.text))
        elif isinstance(e, ToolCall):
            out.append(("call", e.raw))
        elif isinstance(e, ParseError) and e.message.startswith("the reasoning was not closed"):
            out.append(("unclosed reasoning", e.raw))
        elif isinstance(e, ParseError) and e.message.startswith("the completion ended inside"):
            out.append(("unterminated call", e.raw))
        elif isinstance(e, ParseError):
            out.append(("call", e.raw))  # a call that did not validate
    return merged(out)


def merge_events(events: list) -> list:
    """Adjacent deltas of one kind joined: how the events read once the stream is over."""
    out: list = []
    for e in events:
        if out and isinstance(e, (ReasoningDelta, ContentDelta)) and type(out[-1]) is type(e):
            e = type(e)(out.pop().text + e.text)
        out.append(e)
    return out


def feed_pieces(text: str, cuts: list[int], tools: list | None, in_reasoning: bool) -> list:
    parser = StreamParser(tools, in_reasoning=in_reasoning)
    events: list = []
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    for a, b in itertools.pairwise(bounds):
        events += parser.feed(text[a:b])
    return events + parser.finish()


def check(text: str, cuts: list[int], tools: list | None, in_reasoning: bool) -> None:
    whole = parse_completion(text, tools, in_reasoning=in_reasoning)
    pieces = feed_pieces(text, cuts, tools, in_reasoning)
    for events in (whole, pieces):
        assert isinstance(events[-1], End)
        assert not any(isinstance(e, End) for e in events[:-1])
    result = whole[-1]
    assert merge_events(pieces) == merge_events(whole)
    expected = reference(text, in_reasoning)
    assert "".join(piece for _, piece in expected) == text  # nothing lost, nothing added
    assert segments_of(whole) == merged([s for s in expected if s[0] != "tag"])
    assert result.reasoning == "".join(e.text for e in whole if isinstance(e, ReasoningDelta))
    assert result.content == "".join(e.text for e in whole if isinstance(e, ContentDelta))
    assert result.tool_calls == tuple(e for e in whole if isinstance(e, ToolCall))
    assert result.errors == tuple(e for e in whole if isinstance(e, ParseError))


def test_fuzz_generated_completions() -> None:
    rng = random.Random(47)
    for _ in range(FUZZ_COMPLETIONS):
        text = random_completion(rng)
        cuts = [rng.randint(0, len(text)) for _ in range(rng.randint(0, 8))]
        check(text, cuts, rng.choice((TOOLS, None)), rng.random() < 0.7)


def test_fuzz_one_character_at_a_time_holds_back_only_tag_prefixes() -> None:
    """Streaming latency: after each character, only a possible tag prefix is still unseen."""
    rng = random.Random(7)
    for _ in range(300):
        text = random_completion(rng)
        in_reasoning = rng.random() < 0.7
        parser = StreamParser(TOOLS, in_reasoning=in_reasoning)
        seen = {"reasoning": "", "content": ""}
        for n in range(1, len(text) + 1):
            for e in parser.feed(text[n - 1]):
                if isinstance(e, (ReasoningDelta, ContentDelta)):
                    seen["reasoning" if isinstance(e, ReasoningDelta) else "content"] += e.text
            # What a completion ending here would have produced, as far as text goes.
            due = {"reasoning": "", "content": ""}
            for kind, piece in reference(text[:n], in_reasoning):
                if kind in due:
                    due[kind] += piece
            held = ""
            for kind in due:
                assert due[kind].startswith(seen[kind])
                held += due[kind][len(seen[kind]) :]
            # Only a proper prefix of a tag may be held back, and only its longest such suffix.
            assert len(held) <= LONGEST_HOLD, (text[:n], seen, due)
            assert held == "" or any(t.startswith(held) and t != held for t in TAGS[:3])
            assert held == "" or text[:n].endswith(held)


FRAGMENT = st.sampled_from(TAGS + WORDS) | st.text(GARBAGE, max_size=6)
FRAGMENT |= st.sampled_from(TAGS).flatmap(
    lambda t: st.sampled_from([t[:i] for i in range(1, len(t))])
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(FRAGMENT, max_size=20).map("".join),
    st.lists(st.integers(0, 10_000), max_size=12),
    st.sampled_from([TOOLS, None]),
    st.booleans(),
)
def test_any_split_gives_the_same_events(
    text: str, cuts: list[int], tools: list | None, in_reasoning: bool
) -> None:
    check(text, cuts, tools, in_reasoning)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.booleans())
def test_arbitrary_text_never_raises(text: str, in_reasoning: bool) -> None:
    check(text, [len(text) // 3, len(text) // 2], TOOLS, in_reasoning)
