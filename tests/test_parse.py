"""The GLM-4.7 completion parser on hand-written completions, and tool_call_text round trips."""

from __future__ import annotations

import math
from typing import Any

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

TYPED_TOOL = {
    "type": "function",
    "function": {
        "name": "typed",
        "description": "One argument of every JSON schema type.",
        "parameters": {
            "type": "object",
            "properties": {
                "s": {"type": "string"},
                "i": {"type": "integer"},
                "n": {"type": "number"},
                "b": {"type": "boolean"},
                "a": {"type": "array"},
                "o": {"type": "object"},
                "u": {"description": "no type: anything goes"},
            },
            "required": ["s"],
        },
    },
}
ALL_TOOLS = [*TOOLS, TYPED_TOOL]


def end(events: list) -> End:
    assert isinstance(events[-1], End)
    assert sum(isinstance(e, End) for e in events) == 1
    return events[-1]


def call(text: str, tools: list[dict] | None = ALL_TOOLS) -> ToolCall | ParseError:
    """The one tool call or error of a thinking-off completion holding just that call."""
    events = parse_completion(text, tools, in_reasoning=False)
    found = [e for e in events if isinstance(e, (ToolCall, ParseError))]
    assert len(found) == 1, events
    return found[0]


def test_design_example() -> None:
    text = (
        "I should read a.py.</think>Reading it.<tool_call>read_file<arg_key>path</arg_key>"
        "<arg_value>a.py</arg_value></tool_call>"
    )
    raw = "read_file<arg_key>path</arg_key><arg_value>a.py</arg_value>"
    tc = ToolCall("read_file", {"path": "a.py"}, raw)
    assert parse_completion(text, TOOLS) == [
        ReasoningDelta("I should read a.py."),
        ContentDelta("Reading it."),
        tc,
        End("I should read a.py.", "Reading it.", (tc,), ()),
    ]


def test_string_arguments_are_byte_exact() -> None:
    old, new = "\n    x = 1  \n\n", "  y = 2\t\n"
    text = tool_call_text("edit_file", {"path": " a b.py ", "old_text": old, "new_text": new})
    got = call(text)
    assert got == ToolCall(
        "edit_file", {"path": " a b.py ", "old_text": old, "new_text": new}, got.raw
    )
    # A string that looks like JSON stays a string when the schema says string.
    assert call(tool_call_text("write_file", {"path": "1", "content": '{"a": 1}'})).arguments == {
        "path": "1",
        "content": '{"a": 1}',
    }


def test_typed_arguments() -> None:
    text = (
        "<tool_call>typed\n<arg_key>s</arg_key><arg_value>x</arg_value>\n"
        "<arg_key> i </arg_key>\n<arg_value> 42 </arg_value>"
        "<arg_key>n</arg_key><arg_value>1.5</arg_value>"
        "<arg_key>b</arg_key><arg_value>true</arg_value>"
        '<arg_key>a</arg_key><arg_value>[1, "two", null]</arg_value>'
        '<arg_key>o</arg_key><arg_value>{"k": [true]}</arg_value>'
        "<arg_key>u</arg_key><arg_value>('py', 'literal')</arg_value></tool_call>"
    )
    got = call(text)
    assert isinstance(got, ToolCall), got
    assert got.arguments == {
        "s": "x",
        "i": 42,
        "n": 1.5,
        "b": True,
        "a": [1, "two", None],
        "o": {"k": [True]},
        "u": "('py', 'literal')",  # a tuple is no JSON value: the text is kept
    }
    read = call(tool_call_text("read_file", {"path": "a.py", "start_line": 3, "end_line": 9}))
    assert read.arguments == {"path": "a.py", "start_line": 3, "end_line": 9}
    found = call(tool_call_text("search", {"pattern": "x", "regex": True}))
    assert found.arguments == {"pattern": "x", "regex": True}
    # Python literals are accepted too, as mlx_lm's parser does.
    assert call(tool_call_text("typed", {"s": "", "b": "False"})).arguments == {"s": "", "b": False}


def test_integer_arguments_must_be_integers() -> None:
    for bad in ("three", "1.5", "true", "[1]", ""):
        got = call(tool_call_text("read_file", {"path": "a.py", "start_line": bad}))
        assert isinstance(got, ParseError), bad
        assert "'start_line' must be an integer" in got.message
    got = call(tool_call_text("typed", {"s": "", "b": "yes", "a": "{}", "o": "[]", "n": "x"}))
    assert isinstance(got, ParseError)
    for phrase in ("'b' must be true or false", "'a' must be a JSON array", "'o' must be a JSON"):
        assert phrase in got.message


def test_unknown_tool_names_the_known_ones() -> None:
    got = call("<tool_call>read<arg_key>path</arg_key><arg_value>a</arg_value></tool_call>")
    assert isinstance(got, ParseError)
    assert "unknown tool 'read'" in got.message
    assert "read_file" in got.message and "edit_file" in got.message
    assert got.raw == "read<arg_key>path</arg_key><arg_value>a</arg_value>"


def test_unknown_and_missing_arguments() -> None:
    got = call(tool_call_text("read_file", {"file": "a.py"}))
    assert isinstance(got, ParseError)
    assert "unknown argument 'file'" in got.message
    assert "read_file accepts: path, start_line, end_line" in got.message
    assert "missing required argument 'path'" in got.message
    got = call(tool_call_text("edit_file", {"path": "a.py", "old_text": "x"}))
    assert isinstance(got, ParseError) and "missing required argument 'new_text'" in got.message
    got = call(
        "<tool_call>read_file<arg_key>path</arg_key><arg_value>a</arg_value>"
        "<arg_key>path</arg_key><arg_value>b</arg_value></tool_call>"
    )
    assert isinstance(got, ParseError) and "'path' is given twice" in got.message


def test_malformed_call_bodies() -> None:
    for body, phrase in [
        ("", "no tool name"),
        ("<arg_key>path</arg_key><arg_value>a</arg_value>", "no tool name"),
        ("read_file<arg_key>path</arg_key>a.py", "'path' has no <arg_value>"),
        ("read_file<arg_key>path</arg_key><arg_value>a.py", "'path' has no <arg_value>"),
        ("read_file<arg_key>path", "expected <arg_key>"),
        ("read_file<arg_key>path</arg_key><arg_value>a</arg_value>junk", "found 'junk'"),
    ]:
        got = call(f"<tool_call>{body}</tool_call>")
        assert isinstance(got, ParseError), body
        assert phrase in got.message and got.raw == body


def test_calls_without_arguments_and_separators() -> None:
    assert call("<tool_call> list_files \n</tool_call>") == ToolCall(
        "list_files", {}, " list_files \n"
    )
    # Newlines (real or a literal backslash-n) between the tags are tolerated.
    text = (
        "<tool_call>read_file\n<arg_key>path</arg_key>\\n<arg_value>a.py</arg_value>\n"
        "<arg_key>start_line</arg_key>\n<arg_value>2</arg_value>\n</tool_call>"
    )
    assert call(text).arguments == {"path": "a.py", "start_line": 2}


def test_two_tool_calls_and_errors_in_stream_order() -> None:
    first = tool_call_text("read_file", {"path": "a.py"})
    bad = tool_call_text("read_file", {"path": "b.py", "end_line": "x"})
    second = tool_call_text("outline", {"path": "c.py"})
    events = parse_completion(f"Plan.</think>One.{first}\n{bad}Two.{second}", TOOLS)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "ReasoningDelta", "ContentDelta", "ToolCall", "ContentDelta", "ParseError",
        "ContentDelta", "ToolCall", "End",
    ]  # fmt: skip
    result = end(events)
    assert [c.name for c in result.tool_calls] == ["read_file", "outline"]
    assert result.content == "One.\nTwo."
    assert result.errors == (events[4],)


def test_thinking_off() -> None:
    assert parse_completion("Here is the answer.", TOOLS, in_reasoning=False) == [
        ContentDelta("Here is the answer."),
        End("", "Here is the answer.", (), ()),
    ]
    # Without reasoning, a </think> is no tag to close: it is content like any stray tag.
    stray = "a</think>b</tool_call></arg_value><|user|"
    assert end(parse_completion(stray, in_reasoning=False)).content == stray


def test_think_inside_content_is_reasoning_again() -> None:
    text = "<think>\nfirst\n</think>\nSo: <think>second</think> done"
    result = end(parse_completion(text))
    assert result.reasoning == "\nfirst\nsecond"  # the leading <think> is dropped, nothing else
    assert result.content == "\nSo:  done"
    assert result.errors == ()
    # Inside reasoning, tool-call markup is just reasoning text.
    inner = "maybe <tool_call>read_file</tool_call> <think>"
    result = end(parse_completion(inner + "</think>ok"))
    assert (result.reasoning, result.content, result.tool_calls) == (inner, "ok", ())


def test_reasoning_is_byte_identical() -> None:
    reasoning = "  \n\tLet me think.\n\n  <tool_c <thin </thinking> done \n"
    result = end(parse_completion(reasoning + "</think>\n\nAnswer\n"))
    assert result.reasoning == reasoning
    assert result.content == "\n\nAnswer\n"


def test_unclosed_reasoning_and_unterminated_call() -> None:
    events = parse_completion("still thinking <tool_call>x", TOOLS)
    assert events[:-1] == [
        ReasoningDelta("still thinking <tool_call>x"),
        ParseError("the reasoning was not closed: the completion ended before </think>", ""),
    ]
    events = parse_completion("ok</think>Sure.<tool_call>read_file<arg_key>pa", TOOLS)
    error = events[-2]
    assert isinstance(error, ParseError)
    assert error.message.startswith("the completion ended inside a tool call")
    assert error.raw == "read_file<arg_key>pa"
    assert end(events).errors == (error,)


def test_tools_none_accepts_anything() -> None:
    text = tool_call_text("anything", {"path": "a.py", "n": 3, "flag": True, "raw": " x "})
    assert call(text, None) == ToolCall(
        "anything", {"path": "a.py", "n": 3, "flag": True, "raw": " x "}, text[11:-12]
    )
    assert isinstance(call(text, []), ParseError)  # an empty list means no tool is known


def test_split_tags_are_held_back_only_as_long_as_needed() -> None:
    parser = StreamParser(TOOLS)
    assert parser.feed("<") == []  # could still be <think> or </think>
    assert parser.feed("thi") == []
    assert parser.feed("nk>Hm <") == [ReasoningDelta("Hm ")]
    assert parser.feed("x") == [ReasoningDelta("<x")]
    assert parser.feed(" </thi") == [ReasoningDelta(" ")]
    assert parser.feed("nk>A<") == [ContentDelta("A")]
    assert parser.feed("b") == [ContentDelta("<b")]  # "<b" can start no tag: emitted at once
    assert parser.feed("<tool_c") == []
    assert parser.feed("all>list_files</tool_") == []
    assert parser.feed("call>") == [ToolCall("list_files", {}, "list_files")]
    assert parser.feed("<thi") == []
    assert parser.finish() == [
        ContentDelta("<thi"),
        End("Hm <x ", "A<b<thi", (ToolCall("list_files", {}, "list_files"),), ()),
    ]
    assert parser.feed("more") == []
    assert parser.finish()[-1] == end(
        parse_completion("<think>Hm <x </think>A<b<tool_call>list_files</tool_call><thi", TOOLS)
    )


TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30).filter(
    lambda s: "</arg_value>" not in s and "</tool_call>" not in s
)
JSON_LEAF = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | TEXT
JSON_VALUE = st.recursive(
    JSON_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {"s": TEXT},
        optional={
            "i": st.integers(),
            "n": st.floats(allow_nan=False) | st.integers(),
            "b": st.booleans(),
            "a": st.lists(JSON_VALUE, max_size=4),
            "o": st.dictionaries(TEXT, JSON_VALUE, max_size=4),
            "u": JSON_VALUE.filter(lambda v: not isinstance(v, str)),
        },
    )
)
def test_tool_call_text_round_trips(arguments: dict[str, Any]) -> None:
    text = tool_call_text("typed", arguments)
    got = call(f"Calling.{text}")
    assert isinstance(got, ToolCall), got
    assert got.name == "typed" and got.raw == text[len("<tool_call>") : -len("</tool_call>")]
    assert got.arguments == arguments
    assert all(
        not isinstance(v, float) or math.copysign(1, v) == math.copysign(1, arguments[k])
        for k, v in got.arguments.items()
    )  # -0.0 stays -0.0


def test_pathological_values_never_raise() -> None:
    values = [
        "[" * 600 + "]" * 600,
        "[" * 5000,
        "(" * 10_000,
        "9" * 5000,
        "1e999",
        "{1, 2}",
        "b'x'",
    ]
    values += [
        "1j",
        "\x00",
        "{'a': {1: 2}}",
        "[[" * 300 + "]]" * 300,
        "lambda: 0",
        "__import__('os')",
    ]
    for value in values:
        untyped = call(tool_call_text("t", {"u": value}), None)
        assert (
            isinstance(untyped, ToolCall)
            and untyped.raw == f"t<arg_key>u</arg_key><arg_value>{value}</arg_value>"
        )
        assert untyped.arguments["u"] in (value, float("inf")) or isinstance(
            untyped.arguments["u"], list
        )
        typed = call(tool_call_text("typed", {"s": value, "i": value}))
        assert isinstance(typed, ParseError) and "'i' must be an integer" in typed.message


def test_tool_argument_values_decode_as_mlx_lms_glm47_parser_decodes_them() -> None:
    """parse.py keeps its own copy of mlx_lm's value decoding (importing it costs a front-end
    1.6 s of start-up): the two must agree."""
    from mlx_lm.tool_parsers.glm47 import _deserialize as mlx_lm_deserialize

    from glm_lsp.glm.parse import _deserialize

    for raw in ['{"a": [1, 2]}', "3", "3.5", "true", "null", "'x'", "(1, 2)", "{'k': None}",
                "[1, 'a']", "plain text", "", "1e400", "[" * 50, "\\n", '"quoted"', "0x1F"]:  # fmt: skip
        assert _deserialize(raw) == mlx_lm_deserialize(raw), raw
