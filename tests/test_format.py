"""render_prompt against the official template, and incremental rendering."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glm_lsp.glm import render_prompt
from glm_lsp.glm.format import completion_text, render_suffix
from glm_lsp.glm.tool_schemas import TOOLS
from tests.reference_template import reference_render

NON_ASCII_TOOL = {
    "type": "function",
    "function": {
        "name": "traduire",
        "description": "Traduit « un texte » en 日本語 — ✓",
        "parameters": {"type": "object", "properties": {"texte": {"type": "string"}}},
    },
}


def call(name: str, **args: Any) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": args}}


CONVERSATIONS: dict[str, list[dict[str, Any]]] = {
    "user only": [{"role": "user", "content": "Explain a.py"}],
    "system and user": [
        {"role": "system", "content": "You are a coding agent."},
        {"role": "user", "content": "hi"},
    ],
    "reasoning_content": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "answer", "reasoning_content": "  because\n"},
        {"role": "user", "content": "q2"},
    ],
    "embedded think": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nthe answer"},
        {"role": "user", "content": "more"},
    ],
    "embedded think after last user": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "<think>hmm</think>the answer"},
    ],
    "string and non-string args": [
        {"role": "user", "content": "read"},
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "read it",
            "tool_calls": [
                call("read_file", path="a.py", start_line=3, end_line=9),
                call("search", pattern="x", regex=True),
            ],
        },
        {"role": "tool", "content": "1: x = 1"},
        {"role": "tool", "content": "a.py:1: x = 1"},
    ],
    "args of every json type": [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": "Calling.",
            "tool_calls": [
                call("f", a=[1, "é", None], b={"k": [True, 1.5]}, c=None, d=False, e="  sp  ")
            ],
        },
        {"role": "tool", "content": "ok"},
    ],
    "interleaved steps": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "rename foo"},
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "first look",
            "tool_calls": [call("read_file", path="a.py")],
        },
        {"role": "tool", "content": "def foo(): pass"},
        {
            "role": "assistant",
            "content": "Editing.",
            "reasoning_content": "now edit",
            "tool_calls": [call("edit_file", path="a.py", old_text="foo", new_text="bar")],
        },
        {"role": "tool", "content": "edited"},
        {"role": "assistant", "content": "Done.", "reasoning_content": "all good"},
        {"role": "user", "content": "and b.py?"},
        {"role": "assistant", "content": "Sure", "reasoning_content": "again"},
    ],
    "list content": [
        {"role": "user", "content": [{"type": "text", "text": "part1 "}, "part2"]},
        {"role": "tool", "content": [{"output": "o1"}, "o2"]},
    ],
    "none content": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [call("outline", path="x.go")]},
        {"role": "tool", "content": "func main (lines 1-3)"},
    ],
    "empty reasoning": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning_content": ""},
        {"role": "user", "content": "q"},
    ],
    "unicode": [
        {"role": "user", "content": "Übersetze 日本語 😀"},
        {"role": "assistant", "content": "✓", "reasoning_content": "ça va"},
    ],
}

TOOLSETS = {"no tools": None, "our tools": TOOLS, "non-ascii tool": [NON_ASCII_TOOL, *TOOLS[:2]]}
FLAGS = [
    dict(clear_thinking=c, enable_thinking=e, add_generation_prompt=g)
    for c, e, g in itertools.product([False, True], repeat=3)
]


@pytest.mark.parametrize("name", CONVERSATIONS)
@pytest.mark.parametrize("toolset", TOOLSETS)
def test_matches_reference_template(name: str, toolset: str) -> None:
    messages, tools = CONVERSATIONS[name], TOOLSETS[toolset]
    for flags in FLAGS:
        assert render_prompt(messages, tools, **flags) == reference_render(
            messages, tools, **flags
        ), flags


def test_null_content_renders_as_the_serving_stacks_template_it() -> None:
    """A pure tool call has `"content": null` in the OpenAI shape; the prompt holds no 'None'."""
    for flags in FLAGS:
        text = render_prompt(CONVERSATIONS["none content"], TOOLS, **flags)
        assert "None" not in text
        assert "<|assistant|></think><tool_call>outline" in text


def test_render_prompt_is_importable_from_the_package() -> None:
    import glm_lsp.glm
    from glm_lsp.glm.format import render_prompt as from_module

    assert glm_lsp.glm.render_prompt is from_module


def test_defaults_keep_reasoning_and_open_thinking() -> None:
    messages = CONVERSATIONS["reasoning_content"]
    text = render_prompt(messages)
    assert "<think>because</think>answer" in text
    assert text.endswith("<|user|>q2<|assistant|><think>")
    assert render_prompt(messages, enable_thinking=False).endswith("<|assistant|></think>")


# Hypothesis: conversations of user / assistant (reasoning, content, calls) / tool turns.
_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<>{}%#"),
    max_size=20,
)
_value = st.one_of(
    _text, st.integers(-5, 5), st.booleans(), st.none(), st.lists(st.integers(), max_size=3)
)
_call = st.builds(
    lambda n, a: call(n, **a),
    st.sampled_from(["read_file", "edit_file", "search"]),
    st.dictionaries(st.sampled_from(["path", "old_text", "n", "regex"]), _value, max_size=3),
)
_user = st.builds(lambda t: {"role": "user", "content": t}, _text)
_assistant = st.builds(
    lambda r, c, calls: {
        "role": "assistant",
        "content": c,
        "reasoning_content": r,
        "tool_calls": calls,
    },
    st.one_of(st.none(), _text),
    _text,
    st.lists(_call, max_size=2),
)
_tool = st.builds(lambda t: {"role": "tool", "content": t}, _text)
_system = st.builds(lambda t: {"role": "system", "content": t}, _text)
conversations = st.builds(
    lambda s, rest: s + rest,
    st.lists(_system, max_size=1),
    st.lists(st.one_of(_user, _assistant, _tool), min_size=1, max_size=8),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations, st.sampled_from(list(TOOLSETS)), st.sampled_from(FLAGS))
def test_generated_conversations_match_reference(messages: list, toolset: str, flags: dict) -> None:
    tools = TOOLSETS[toolset]
    assert render_prompt(messages, tools, **flags) == reference_render(messages, tools, **flags)


@settings(max_examples=100, deadline=None)
@given(conversations, st.data(), st.booleans(), st.booleans())
def test_history_plus_suffix_is_the_full_render(
    messages: list, data, clear: bool, think: bool
) -> None:
    cut = data.draw(st.integers(0, len(messages)))
    history = render_prompt(
        messages[:cut], TOOLS, clear_thinking=clear, add_generation_prompt=False
    )
    full = render_prompt(messages, TOOLS, clear_thinking=clear, enable_thinking=think)
    try:
        suffix = render_suffix(messages, cut, clear_thinking=clear, enable_thinking=think)
    except ValueError:
        assert clear and not full.startswith(history)
        return
    assert history + suffix == full


def test_completion_text_is_what_the_template_renders_back() -> None:
    message = {
        "role": "assistant",
        "content": "Reading it.",
        "reasoning_content": "I should read a.py.",
        "tool_calls": [call("read_file", path="a.py", start_line=2)],
    }
    prompt = render_prompt([{"role": "user", "content": "go"}], TOOLS)
    full = render_prompt(
        [{"role": "user", "content": "go"}, message], TOOLS, add_generation_prompt=False
    )
    assert prompt + completion_text(message) == full
    assert completion_text(message) == (
        "I should read a.py.</think>Reading it.<tool_call>read_file<arg_key>path</arg_key>"
        "<arg_value>a.py</arg_value><arg_key>start_line</arg_key><arg_value>2</arg_value></tool_call>"
    )
