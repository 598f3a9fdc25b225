"""Hypothesis against every glm.* command over one real `glm-lsp serve` process.

Arguments of every shape: missing, null, not a list, not an object, two objects, valid objects
with one field dropped or replaced by junk (wrong types, huge strings, lone surrogates, nested
junk, bad URIs, out-of-range positions) or with extra fields. For each case: an answer comes (no
hang), a bad one is a JSON-RPC error naming the field (never an internal error), and glm.status
answers right after. Argument shapes that start a real request run it on the tiny model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.lsp_wire import WireClient, serve_argv

FUZZ_CASES = 250
REPLY = "ok</think>Done."  # a final answer with thinking on or off: never a parse error
INVALID_PARAMS, BACKEND_ERROR, CANCELLED, INTERNAL = -32602, -32001, -32800, -32603
DESIGN_COMMANDS = {
    "glm.explain",
    "glm.refactor",
    "glm.fix",
    "glm.ask",
    "glm.cancel",
    "glm.status",
    "glm.thinking.show",
    "glm.thinking.reset",
    "glm.undo",
}
MAX_MESSAGE = 1_000  # an error never echoes a megabyte of junk back


def rng(l1: int, c1: int, l2: int, c2: int) -> dict[str, Any]:
    return {"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}}


@dataclass
class Live:
    client: WireClient
    root: Path
    commands: list[str]
    cases: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def uri(self, rel: str) -> str:
        return (self.root / rel).as_uri()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("fuzz-commands")
    root = tmp / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("def foo(x):\n    return 2 * x\n")
    (root / "notes.txt").write_text("notes\n")
    os.symlink("/etc/passwd", root / "passwd-link")
    outside = tmp / "outside.py"
    outside.write_text("SECRET = 1\n")
    os.symlink(outside, root / "outside-link.py")
    script = tmp / "replies.json"
    script.write_text(json.dumps([REPLY] * (FUZZ_CASES * 4)))
    client = WireClient(
        serve_argv(tiny_model_dir, "--scripted-replies", str(script), "--max-tokens", "64"),
        stderr_path=tmp / "stderr.txt",
    )
    try:
        init = client.initialize(root)
        commands = init["capabilities"]["executeCommandProvider"]["commands"]
        assert set(commands) >= DESIGN_COMMANDS, commands
        yield Live(client, root, sorted(commands))
    finally:
        client.close()


# -- strategies -----------------------------------------------------------------------------------

SCALAR = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
JUNK = st.recursive(
    SCALAR,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
HUGE = st.sampled_from(["x" * 300_000, " " * 150_000, "é" * 120_000, "[" * 200_000])
SURROGATE = st.sampled_from(["\ud800", "a\udfffb", "\udc80" * 10])
BAD_URIS = st.sampled_from(
    [
        "",
        "   ",
        "file:",
        "file://",
        "file:///",
        "file://[::1",
        "file://host/share/x.py",
        "http://127.0.0.1/x.py",
        "untitled:Untitled-1",
        "/etc/passwd",
        "file:///etc/passwd",
        "file:///nonexistent/x.py",
        "FILE:///x",
        "file:///%00",
        "file:///%",
        "file:///" + "a" * 300,
        "file:///" + "a/" * 3000,
    ]
) | st.text(max_size=60)
POSITIONS = st.sampled_from([-1, 2**31, 2**64, 1.5, "3", None, True, [0]]) | st.integers(
    0, 2**31 - 1
)


def ranges() -> st.SearchStrategy[Any]:
    position = st.fixed_dictionaries({"line": POSITIONS, "character": POSITIONS})
    return (
        st.fixed_dictionaries({"start": position, "end": position})
        | st.fixed_dictionaries({"start": position})
        | JUNK
    )


def workspace_uris(live: Live) -> st.SearchStrategy[str]:
    names = ["pkg/a.py", "notes.txt", "pkg", "missing.py", "passwd-link", "outside-link.py"]
    names += ["pkg/../notes.txt", "pkg/a.py%20", ".glm-lsp/thinking.jsonl", "pkg/a.py/x"]
    return st.sampled_from([live.uri(n) for n in names])


def base_argument(live: Live, command: str) -> dict[str, Any]:
    a = live.uri("pkg/a.py")
    return {
        "glm.explain": {"uri": a, "range": rng(0, 0, 1, 0), "question": "what?"},
        "glm.refactor": {"uri": a, "instruction": "rename foo"},
        "glm.fix": {
            "uri": a,
            "range": rng(0, 0, 1, 0),
            "diagnostics": [{"message": "bad", "range": rng(0, 0, 0, 3), "source": "t"}],
        },
        "glm.ask": {"question": "why?"},
        "glm.thinking.show": {"limit": 2},
    }.get(command, {})


FIELDS = ["uri", "range", "question", "instruction", "thinking", "limit", "diagnostics"]


@dataclass
class Case:
    params: Any  # the executeCommand params as sent (may be malformed)
    command: str
    blame: str | None  # the field an error must name ("" for the argument shape)

    def __repr__(self) -> str:  # hypothesis prints failing cases: keep 300 KB strings out
        text = repr(self.params)
        return f"Case({self.command}, blame={self.blame!r}, params={text[:400]}…{len(text)})"


@st.composite
def cases(draw: st.DrawFn, live: Live) -> Case:
    command = draw(st.sampled_from([*live.commands, "glm.nope"]))
    shape = draw(
        st.sampled_from(
            ["field"] * 6 + ["drop", "extra", "valid", "no-args", "empty", "raw", "not-object"]
        )
    )
    obj = dict(base_argument(live, command))
    blame: str | None = None
    if shape == "raw":  # the params themselves are wrong
        params = draw(
            st.sampled_from([None, [], "glm.status", {"arguments": []}, {"command": 5}])
            | st.fixed_dictionaries({"command": st.just(command), "arguments": JUNK})
        )
        return Case(params, command, "")
    if shape == "no-args":
        return Case({"command": command}, command, None)
    if shape == "empty":
        return Case({"command": command, "arguments": []}, command, None)
    if shape == "not-object":
        args = draw(
            st.lists(JUNK.filter(lambda v: not isinstance(v, dict)), min_size=1, max_size=2)
            | st.tuples(st.just(obj), st.just(obj)).map(list)
        )
        return Case({"command": command, "arguments": args}, command, "")
    if shape == "drop" and obj:
        obj.pop(draw(st.sampled_from(sorted(obj))))
    elif shape == "extra":
        obj |= draw(
            st.dictionaries(
                st.text(max_size=12).filter(lambda k: k not in FIELDS), JUNK, max_size=4
            )
        )
    elif shape == "field":
        name = draw(st.sampled_from(FIELDS))
        if name == "uri":
            value = draw(BAD_URIS | workspace_uris(live) | JUNK | SURROGATE)
        elif name == "range":
            value = draw(ranges())
        elif name == "diagnostics":
            value = draw(
                st.lists(
                    st.one_of(JUNK, st.fixed_dictionaries({"message": JUNK, "range": ranges()}))
                )
                | JUNK
            )
        else:
            value = draw(
                JUNK | HUGE | SURROGATE | st.sampled_from(["auto", "enabled", True, 0, -1])
            )
        obj[name] = value
        blame = name
    return Case({"command": command, "arguments": [obj]}, command, blame)


def check_result(command: str, result: Any) -> None:
    if command in ("glm.explain", "glm.ask"):
        assert set(result) >= {"text", "reasoning", "turn", "stats"}, result
    elif command in ("glm.refactor", "glm.fix"):
        assert set(result) >= {"applied", "changes", "turn", "stats"}, result
        assert result["applied"] is False  # the scripted model proposes nothing
    elif command == "glm.status":
        assert set(result) >= {"backend", "model", "busy", "queued", "turns", "stats"}
    elif command == "glm.thinking.show":
        assert isinstance(result, list)
    elif command in ("glm.undo", "glm.retry"):
        assert result["applied"] is False and result["failureReason"]
    elif command == "glm.cancel":
        assert result == {"cancelled": 0}


def run_case(live: Live, case: Case) -> str:
    client = live.client
    msg_id = client.request_async("workspace/executeCommand", case.params)
    answer = client.wait(msg_id, timeout=120)  # a TimeoutError here is a hang: a failure
    live.cases += 1
    if "error" not in answer:
        check_result(case.command, answer["result"])
        outcome = "result"
    else:
        error = answer["error"]
        code, message = error["code"], error["message"]
        assert code != INTERNAL, (case, str(error)[:600])
        assert len(message) < MAX_MESSAGE, message[:300]
        if code == INVALID_PARAMS:
            if case.command == "glm.nope" and case.blame != "":
                assert "glm.nope" in message and "not defined" in message
            elif case.blame:
                assert f"'{case.blame}" in message, (case.blame, message[:300])
            elif case.blame == "":
                # arguments: null counts as no argument, so a missing field may be named instead
                shape = ("one object argument", "malformed params", "is not defined", "' is")
                assert any(m in message for m in shape), message
            else:
                assert "'" in message, message  # names a field
        else:
            # a request that started: the only acceptable failures are clean ones
            assert code in (BACKEND_ERROR, CANCELLED), error
            assert "scripted replies exhausted" in message or code == CANCELLED, message
        outcome = f"error {code}"
    live.outcomes[outcome] = live.outcomes.get(outcome, 0) + 1
    status = client.command("glm.status", {}, timeout=20)  # the next request is answered
    assert status["busy"] is False and status["queued"] == 0
    assert client.proc.poll() is None
    assert client.edits == []  # nothing proposed, nothing sent
    return outcome


def test_fuzz_every_command(live: Live) -> None:
    @settings(
        max_examples=FUZZ_CASES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        run_case(live, data.draw(cases(live)))

    fuzz()
    print(f"\n{live.cases} command cases over one server: {live.outcomes}")
    assert live.cases >= 200
    assert live.outcomes.get("result", 0) >= 10  # real requests ran between the bad ones
    # Bad arguments are answers, not faults: the server's log holds no traceback for them.
    assert "Traceback" not in live.client.stderr(), live.client.stderr()[-3000:]


EXPLICIT = [
    # (params, field the error names)
    ({"command": "glm.explain", "arguments": [{"uri": "file://[::1"}]}, "'uri'"),
    (
        {
            "command": "glm.fix",
            "arguments": [{"uri": "U", "range": rng(0, 0, 1, 0), "diagnostics": 5}],
        },
        "'diagnostics'",
    ),
    (
        {
            "command": "glm.fix",
            "arguments": [
                {
                    "uri": "U",
                    "range": rng(0, 0, 1, 0),
                    "diagnostics": [{"message": "m", "range": "x"}],
                }
            ],
        },
        "'diagnostics[0].range'",
    ),
    (
        {"command": "glm.explain", "arguments": [{"uri": "U", "range": rng(0, 0, 2**40, 0)}]},
        "'range.end.line'",
    ),
    (
        {"command": "glm.explain", "arguments": [{"uri": "U", "range": rng(0, 0, 0, -1)}]},
        "'range.end.character'",
    ),
    ({"command": "glm.status", "arguments": [{"uri": "x" * 100_000}]}, "'uri'"),
    ({"command": "glm.ask", "arguments": [{"question": ["x"] * 10_000}]}, "'question'"),
    (
        {"command": "glm.explain", "arguments": [{"uri": "U", "thinking": "x" * 10_000}]},
        "'thinking'",
    ),
    ({"command": "glm.thinking.show", "arguments": [{"limit": "x" * 300_000}]}, "'limit'"),
    (
        {"command": "glm.explain", "arguments": [{"uri": "U", "thinking": [7] * 5_000}]},
        "'thinking'",
    ),
    ({"command": "glm.ask", "arguments": [{"question": {"k": "x" * 5_000}}]}, "'question'"),
    ({"command": "glm.explain", "arguments": [{"uri": "L"}]}, "symbolic link"),
    ({"command": "glm.explain", "arguments": [{"uri": "D"}]}, "'..'"),
    ({"command": "glm.explain", "arguments": [{"uri": "file:///" + "a" * 3000}]}, "'uri'"),
    ({"command": "glm.explain"}, "'uri'"),
    ({"command": "glm.explain", "arguments": {"uri": "U"}}, "one object argument"),
]


@pytest.mark.parametrize(("params", "names"), EXPLICIT, ids=range(len(EXPLICIT)))
def test_known_bad_arguments(live: Live, params: dict[str, Any], names: str) -> None:
    """Each of these was an internal error (-32603 with a traceback), a silent hang, an echo of
    the whole value, or a file outside the workspace read into the prompt."""
    text = json.dumps(params)
    text = text.replace('"U"', json.dumps(live.uri("pkg/a.py")))
    text = text.replace('"L"', json.dumps(live.uri("passwd-link")))
    text = text.replace('"D"', json.dumps(live.root.as_uri() + "/pkg/../passwd-link"))
    answer = live.client.wait(
        live.client.request_async("workspace/executeCommand", json.loads(text)), 60
    )
    assert answer.get("error", {}).get("code") == INVALID_PARAMS, answer
    assert names in answer["error"]["message"] and len(answer["error"]["message"]) < MAX_MESSAGE
    assert live.client.command("glm.status", {}, timeout=20)["busy"] is False


@pytest.mark.parametrize(
    "params",
    [
        None,
        [],
        {"arguments": []},
        {"command": "glm.status", "arguments": 7},
        "glm.status",
    ],
)
def test_malformed_params_are_answered(live: Live, params: Any) -> None:
    """pygls dropped requests it could not structure: the client waited for ever."""
    answer = live.client.wait(live.client.request_async("workspace/executeCommand", params), 30)
    assert answer["error"]["code"] == INVALID_PARAMS, answer
    assert "malformed params" in answer["error"]["message"]
    assert live.client.command("glm.status", {}, timeout=20)["busy"] is False


def test_the_prompt_never_held_an_outside_file(live: Live) -> None:
    log = live.root / ".glm-lsp" / "thinking.jsonl"
    text = log.read_text() if log.exists() else ""
    assert "root:x:0:0" not in text and "SECRET = 1" not in text
    assert "Traceback" not in "".join(live.client.messages())
