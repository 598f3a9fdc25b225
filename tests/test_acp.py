"""`glm-lsp acp` driven by the Python SDK's client side: a real agent process, the tiny model,
scripted replies forcing the words while the real runtime does the work."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from acp import RequestError, text_block

from glm_lsp.agent.edit_store import EditStore
from tests.acp_client import RecordingClient, acp_agent, acp_command, write_replies
from tests.test_run_command import HAS_BWRAP

pytestmark = pytest.mark.slow

READ = (
    "I should read a.py first.</think>Reading it."
    "<tool_call>read_file<arg_key>path</arg_key><arg_value>a.py</arg_value></tool_call>"
)
EDIT_A = (
    "It holds A = 1; change it.</think>"
    "<tool_call>edit_file<arg_key>path</arg_key><arg_value>a.py</arg_value>"
    "<arg_key>old_text</arg_key><arg_value>A = 1</arg_value>"
    "<arg_key>new_text</arg_key><arg_value>A = 2</arg_value></tool_call>"
)
WRITE_B = (
    "Now b.py follows.</think>"
    "<tool_call>write_file<arg_key>path</arg_key><arg_value>b.py</arg_value>"
    "<arg_key>content</arg_key><arg_value>from a import A\nB = A + 1\n</arg_value></tool_call>"
)
DONE = "Both files agree.</think>I set A to 2 and added b.py, which builds on it."
ANSWER = "A question about the same file.</think>A is 2 now."
WRITE_PKG_B = WRITE_B.replace(">b.py<", ">pkg/b.py<")
TURNED_DOWN = "Both were rejected.</think>You turned both changes down; nothing changed."


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "a.py").write_text("A = 1\n", encoding="utf-8")
    return root


def log_of(root: Path, session_id: str) -> list[dict]:
    path = root / ".glm-lsp" / "sessions" / session_id / "thinking.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_prompt_reads_the_buffer_asks_and_writes_two_files_through_the_client(
    tiny_model_dir: Path, workspace: Path, tmp_path: Path
) -> None:
    replies = write_replies(tmp_path / "r.json", [READ, EDIT_A, WRITE_B, DONE])
    unsaved = {str(workspace / "a.py"): "A = 1  # unsaved\n"}
    client = RecordingClient(buffers=unsaved, answers=["allow_once", "allow_once"])
    async with acp_agent(client, acp_command(tiny_model_dir, replies)) as (conn, init, _):
        assert init.protocol_version == 1
        assert init.agent_capabilities.load_session is True
        session = await conn.new_session(cwd=str(workspace), mcp_servers=[])
        assert [m.id for m in session.modes.available_modes] == ["auto", "think", "fast"]
        reply = await conn.prompt(
            session_id=session.session_id, prompt=[text_block("Set A to 2 and add b.py")]
        )
    assert reply.stop_reason == "end_turn"
    # Reasoning streamed as thought chunks, byte-exact, and the answer as message chunks.
    assert client.thoughts() == (
        "I should read a.py first.It holds A = 1; change it.Now b.py follows.Both files agree."
    )
    assert client.messages() == "Reading it.I set A to 2 and added b.py, which builds on it."
    # Tool calls with kinds, locations and, for edits, a diff.
    starts = client.of_kind("tool_call")
    assert [(s.kind, s.title) for s in starts] == [
        ("read", "Read a.py"),
        ("edit", "Edit a.py"),
        ("edit", "Write b.py"),
    ]
    assert starts[0].locations[0].path == str(workspace / "a.py")
    done = [u for u in client.of_kind("tool_call_update") if u.status == "completed"]
    diffs = [c for u in done for c in (u.content or []) if c.type == "diff"]
    assert (diffs[0].path, diffs[0].old_text, diffs[0].new_text) == (
        str(workspace / "a.py"),
        "A = 1  # unsaved\n",
        "A = 2  # unsaved\n",
    )
    # One question per file, asked at its own tool call, with that file's diff and path alone.
    a, b = str(workspace / "a.py"), str(workspace / "b.py")
    assert client.edit_questions() == [
        ("Edit a.py", a, "A = 1  # unsaved\n", "A = 2  # unsaved\n", [a]),
        ("Create b.py", b, None, "from a import A\nB = A + 1\n", [b]),
    ]
    assert [t.tool_call_id for t, _ in client.permissions] == [s.tool_call_id for s in starts[1:]]
    for _, options in client.permissions:
        assert options == ["allow_once", "allow_always", "reject_once"]
    # The final answer only after the last answer to a question.
    assert client.said_after_the_last_answer() == (
        "I set A to 2 and added b.py, which builds on it."
    )
    # Each written through the client once approved, unsaved text kept.
    assert client.writes == [(a, "A = 2  # unsaved\n"), (b, "from a import A\nB = A + 1\n")]
    assert str(workspace / "a.py") in client.reads
    # The same preserved-thinking log as the LSP path, in the session's own folder.
    (record,) = log_of(workspace, session.session_id)
    assert record["command"] == "session/prompt" and record["prompt"] == "Set A to 2 and add b.py"
    assert record["applied"] is True and record["thinking"] == "enabled"
    assert [(c["path"], c["applied"]) for c in record["changes"]] == [
        ("b.py", True),
        ("a.py", True),
    ]
    tool_results = [m["content"] for m in record["messages"] if m["role"] == "tool"]
    assert tool_results[1].endswith("the user approved this change to a.py; it is saved")
    # The turn's edits are one undo record.
    undo = EditStore(workspace).applied
    assert undo is not None and undo.turn == 1
    assert sorted(c.path for c in undo.change_set.changes) == ["a.py", "b.py"]
    assert reply.field_meta["glm"]["stats"] == record["stats"]
    assert not (workspace / ".glm-lsp" / "thinking.jsonl").exists()  # the LSP's is untouched


async def test_load_replays_the_reasoning_and_the_next_prompt_reuses_the_persisted_cache(
    tiny_model_dir: Path, workspace: Path, tmp_path: Path
) -> None:
    first = write_replies(tmp_path / "one.json", [READ, EDIT_A, DONE])
    client = RecordingClient(answers=["allow_always"])
    async with acp_agent(client, acp_command(tiny_model_dir, first)) as (conn, _, _):
        session = await conn.new_session(cwd=str(workspace), mcp_servers=[])
        sid = session.session_id
        await conn.prompt(session_id=sid, prompt=[text_block("  Set A to 2\nand nothing else")])
    live_thoughts = client.thoughts()
    assert (workspace / "a.py").read_text() == "A = 2\n"

    edit_again = EDIT_A.replace("A = 2", "A = 3").replace("A = 1", "A = 2")
    envrc = (
        "And direnv.</think><tool_call>write_file<arg_key>path</arg_key><arg_value>.envrc"
        "</arg_value><arg_key>content</arg_key><arg_value>export A=3\n</arg_value></tool_call>"
    )
    second = write_replies(tmp_path / "two.json", [edit_again, envrc, ANSWER])
    later = RecordingClient(answers=["allow_once"])
    async with acp_agent(later, acp_command(tiny_model_dir, second)) as (conn, _, _):
        # A session opened and never prompted is neither listed nor kept.
        unused = (await conn.new_session(cwd=str(workspace), mcp_servers=[])).session_id
        listed = (await conn.list_sessions(cwd=str(workspace))).sessions
        assert [(s.session_id, s.title) for s in listed] == [(sid, "Set A to 2")]
        assert listed[0].updated_at.startswith("20")
        await conn.load_session(cwd=str(workspace), session_id=sid, mcp_servers=[])
        replayed = list(later.updates)
        later.updates.clear()
        reply = await conn.prompt(session_id=sid, prompt=[text_block("Set A to 3, add .envrc")])
    assert not (workspace / ".glm-lsp" / "sessions" / unused).exists()
    # The replay: the typed prompt, then each step's thought byte-exact, messages, tool calls.
    kinds = [u.session_update for _, u in replayed]
    assert kinds[0] == "user_message_chunk"
    assert replayed[0][1].content.text == "  Set A to 2\nand nothing else"
    thoughts = [u.content.text for _, u in replayed if u.session_update == "agent_thought_chunk"]
    assert "".join(thoughts) == live_thoughts
    record = log_of(workspace, sid)[0]
    logged = [m["reasoning_content"] for m in record["messages"] if m["role"] == "assistant"]
    assert thoughts == logged
    assert [u.title for _, u in replayed if u.session_update == "tool_call"] == [
        "Read a.py",
        "Edit a.py",
    ]
    # Each assistant message its own, a paragraph apart: not "Reading it.I set A…".
    said = [u for _, u in replayed if u.session_update == "agent_message_chunk"]
    assert [u.content.text for u in said] == ["Reading it.", "\n\n", DONE.split("</think>")[1]]
    assert said[0].message_id != said[1].message_id == said[2].message_id
    # "Always" was remembered for the session: a.py changed without a question in the new
    # process; .envrc can run code, so it was asked all the same (and with no "always").
    assert (workspace / "a.py").read_text() == "A = 3\n"
    ((title, *_),) = later.edit_questions()
    assert title == "Create .envrc (it can run code on its own)"
    assert later.permissions[0][1] == ["allow_once", "reject_once"]
    assert (workspace / ".envrc").read_text() == "export A=3\n"
    # A new process, and the prompt prefix came from the persisted KV cache.
    stats = reply.field_meta["glm"]["stats"]
    assert stats["reusedTokens"] > 0 and reply.usage.cached_read_tokens == stats["reusedTokens"]
    assert later.messages() == "A is 2 now."
    assert [r["turn"] for r in log_of(workspace, sid)] == [1, 2]


async def test_rejected_edit_writes_nothing_and_the_model_hears_of_it(
    tiny_model_dir: Path, workspace: Path, tmp_path: Path
) -> None:
    replies = write_replies(tmp_path / "r.json", [READ, EDIT_A, WRITE_PKG_B, TURNED_DOWN, ANSWER])
    client = RecordingClient(answers=["reject_once", "reject_once"])
    async with acp_agent(client, acp_command(tiny_model_dir, replies)) as (conn, _, _):
        session = await conn.new_session(cwd=str(workspace), mcp_servers=[])
        sid = session.session_id
        reply = await conn.prompt(session_id=sid, prompt=[text_block("Set A to 2")])
        assert reply.field_meta["glm"]["applied"] is False
        await conn.prompt(session_id=sid, prompt=[text_block("And now?")])
    assert (workspace / "a.py").read_text() == "A = 1\n" and client.writes == []
    assert not (workspace / "pkg").exists()
    # Titles name the path in the session's folder; locations and diffs are absolute.
    b = str(workspace / "pkg" / "b.py")
    assert [(q[0], q[1], q[4]) for q in client.edit_questions()] == [
        ("Edit a.py", str(workspace / "a.py"), [str(workspace / "a.py")]),
        ("Create pkg/b.py", b, [b]),
    ]
    # The model heard it at each tool call, before its next step and its answer.
    first, second = log_of(workspace, sid)
    results = [m["content"] for m in first["messages"] if m["role"] == "tool"]
    assert results[1:] == [
        "Error: the user rejected this change to a.py; it was not made",
        "Error: the user rejected this change to pkg/b.py; it was not made",
    ]
    said = client.said_after_the_last_answer()  # this turn's answer, then the next turn's
    assert said == "You turned both changes down; nothing changed." + "A is 2 now."
    failed = [u for u in client.of_kind("tool_call_update") if u.status == "failed"]
    assert len(failed) == 2 and all(c.type == "content" for u in failed for c in u.content)
    assert [(c["path"], c["applied"]) for c in first["changes"]] == [
        ("a.py", False),
        ("pkg/b.py", False),
    ]
    assert "the user rejected the change to a.py" in second["messages"][0]["content"]
    assert EditStore(workspace).applied is None  # nothing to undo


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell runs verifyCommand")
async def test_verification_runs_on_what_was_approved_and_a_failure_goes_back(
    tiny_model_dir: Path, workspace: Path, tmp_path: Path
) -> None:
    fixed = "b.py was rejected.</think>The check needs b.py, which you turned down."
    replies = write_replies(tmp_path / "r.json", [EDIT_A, WRITE_B, DONE, fixed])
    client = RecordingClient(answers=["allow_once", "reject_once"])
    check = f"{sys.executable} -c 'import a, b'"
    flags = ("--verify-command", check, "--verify-rounds", "1", "--sandbox", "off")
    async with acp_agent(client, acp_command(tiny_model_dir, replies, *flags), fs=False) as (
        conn,
        _,
        _,
    ):
        sid = (await conn.new_session(cwd=str(workspace), mcp_servers=[])).session_id
        reply = await conn.prompt(session_id=sid, prompt=[text_block("Set A to 2, add b.py")])
    # a.py approved and on disk; b.py rejected, so the check (run on the approved edit) fails.
    assert (workspace / "a.py").read_text() == "A = 2\n" and not (workspace / "b.py").exists()
    (record,) = log_of(workspace, sid)
    feedback = [m["content"] for m in record["messages"] if m["role"] == "user"][1:]
    assert len(feedback) == 1 and feedback[0].startswith(f"The verification command `{check}`")
    assert "No module named 'b'" in feedback[0]
    assert record["verification"]["exitCode"] == 1
    assert reply.field_meta["glm"]["applied"] is True
    assert [(c["path"], c["applied"]) for c in record["changes"]] == [
        ("a.py", True),
        ("b.py", False),
    ]
    assert client.said_after_the_last_answer() == (
        DONE.split("</think>")[1] + fixed.split("</think>")[1]
    )


async def test_without_client_fs_each_approved_edit_goes_to_disk(
    tiny_model_dir: Path, workspace: Path, tmp_path: Path
) -> None:
    replies = write_replies(tmp_path / "r.json", [READ, EDIT_A, WRITE_B, DONE])
    client = RecordingClient(answers=["allow_once", "allow_once"])
    command = acp_command(tiny_model_dir, replies)
    async with acp_agent(client, command, fs=False) as (conn, _, _):
        session = await conn.new_session(cwd=str(workspace), mcp_servers=[])
        await conn.prompt(session_id=session.session_id, prompt=[text_block("Set A to 2")])
    assert client.reads == [] and client.writes == []
    assert (workspace / "a.py").read_text() == "A = 2\n"
    assert (workspace / "b.py").read_text() == "from a import A\nB = A + 1\n"


async def test_cancel_stops_the_prompt_and_logs_nothing(
    tiny_model_dir: Path, workspace: Path, tmp_path: Path
) -> None:
    long_reply = "Let me think this through. " * 400 + "</think>Done."
    replies = write_replies(tmp_path / "r.json", [long_reply])
    client = RecordingClient()
    async with acp_agent(client, acp_command(tiny_model_dir, replies)) as (conn, _, _):
        session = await conn.new_session(cwd=str(workspace), mcp_servers=[])
        sid = session.session_id
        task = asyncio.create_task(conn.prompt(session_id=sid, prompt=[text_block("Think")]))
        await client.first_of_kind("agent_thought_chunk")
        loop = asyncio.get_running_loop()
        asked = loop.time()
        await conn.cancel(session_id=sid)
        reply = await asyncio.wait_for(task, timeout=30)
        print(f"cancel answered in {loop.time() - asked:.3f} s")
    assert reply.stop_reason == "cancelled"
    assert len(client.thoughts()) < len(long_reply) - 20
    assert not (workspace / ".glm-lsp" / "sessions" / sid / "thinking.jsonl").exists()


async def test_bad_requests_get_errors_that_name_the_field(
    tiny_model_dir: Path, workspace: Path, tmp_path: Path
) -> None:
    replies = write_replies(tmp_path / "r.json", [])
    client = RecordingClient()
    async with acp_agent(client, acp_command(tiny_model_dir, replies)) as (conn, _, process):
        with pytest.raises(RequestError) as unknown:
            await conn.prompt(session_id="nope", prompt=[text_block("hi")])
        assert "sessionId 'nope' is not open" in str(unknown.value)
        with pytest.raises(RequestError) as escape:
            await conn.load_session(cwd=str(workspace), session_id="../../etc", mcp_servers=[])
        assert "is not a glm-lsp session id" in str(escape.value)
        with pytest.raises(RequestError) as relative:
            await conn.new_session(cwd="ws", mcp_servers=[])
        assert "cwd 'ws' is not absolute" in str(relative.value)
        session = await conn.new_session(cwd=str(workspace), mcp_servers=[])
        with pytest.raises(RequestError) as mode:
            await conn.set_session_mode(session_id=session.session_id, mode_id="turbo")
        assert "modeId 'turbo' is not one of auto, think, fast" in str(mode.value)
        with pytest.raises(RequestError) as empty:
            await conn.prompt(session_id=session.session_id, prompt=[])
        assert "prompt has no text" in str(empty.value)
        assert process.returncode is None  # still serving
        await conn.set_session_mode(session_id=session.session_id, mode_id="fast")


async def test_two_sessions_take_turns_and_each_reloads_its_own_cache(
    tiny_model_dir: Path, workspace: Path, tmp_path: Path
) -> None:
    one, two = "First.</think>One.", "Second.</think>Two."
    replies = write_replies(tmp_path / "r.json", [one, two, ANSWER])
    client = RecordingClient()
    async with acp_agent(client, acp_command(tiny_model_dir, replies)) as (conn, _, _):
        x = (await conn.new_session(cwd=str(workspace), mcp_servers=[])).session_id
        y = (await conn.new_session(cwd=str(workspace), mcp_servers=[])).session_id
        first = await conn.prompt(session_id=x, prompt=[text_block("Hello from x")])
        await conn.prompt(session_id=y, prompt=[text_block("Hello from y")])
        again = await conn.prompt(session_id=x, prompt=[text_block("x again")])
    before = first.field_meta["glm"]["stats"]
    after = again.field_meta["glm"]["stats"]
    # y's request took the memory; x's whole first turn came back from x's file, not recomputed.
    assert after["reusedTokens"] >= before["promptTokens"] + before["generatedTokens"] - 1
    assert [r["prompt"] for r in log_of(workspace, x)] == ["Hello from x", "x again"]
    assert [r["prompt"] for r in log_of(workspace, y)] == ["Hello from y"]
    assert (workspace / ".glm-lsp" / "sessions" / x / "kv-cache.safetensors").is_file()


async def test_an_lsp_server_and_an_acp_session_share_a_workspace_undisturbed(
    tiny_model_dir: Path, workspace: Path, tmp_path: Path
) -> None:
    from tests.lsp_wire import start_server

    lsp = start_server(tmp_path, tiny_model_dir, workspace, ["The LSP answer."])
    try:
        replies = write_replies(tmp_path / "r.json", ["One.</think>One.", ANSWER])
        client = RecordingClient()
        async with acp_agent(client, acp_command(tiny_model_dir, replies)) as (conn, _, _):
            sid = (await conn.new_session(cwd=str(workspace), mcp_servers=[])).session_id
            first = await conn.prompt(session_id=sid, prompt=[text_block("Hello")])
            answer = await asyncio.to_thread(
                lsp.command, "glm.ask", {"uri": (workspace / "a.py").as_uri(), "question": "A?"}
            )
            assert answer["text"] == "The LSP answer." and answer["turn"] == 1
            again = await conn.prompt(session_id=sid, prompt=[text_block("Again")])
    finally:
        lsp.close()
    before = first.field_meta["glm"]["stats"]
    assert again.field_meta["glm"]["stats"]["reusedTokens"] >= before["promptTokens"]
    assert [r["turn"] for r in log_of(workspace, sid)] == [1, 2]
    lsp_log = (workspace / ".glm-lsp" / "thinking.jsonl").read_text().splitlines()
    assert [json.loads(line)["command"] for line in lsp_log] == ["glm.ask"]


def test_malformed_json_is_answered_and_the_agent_keeps_serving(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import subprocess

    replies = write_replies(tmp_path / "r.json", [])
    lines = [
        b"{not json\n",
        b'{"jsonrpc": "2.0", "id": 1, "method": "session/frobnicate", "params": {}}\n',
        b'{"jsonrpc": "2.0", "id": 2, "method": "session/new", "params": {"cwd": 7}}\n',
        b"[1, 2]\n",
        b'"a string"\n',
        b'{"jsonrpc": "2.0", "id": 4, "method": "session/prompt", "params": "x"}\n',
        b'{"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {"protocolVersion": 1}}\n',
    ]
    done = subprocess.run(
        acp_command(tiny_model_dir, replies),
        input=b"".join(lines),
        capture_output=True,
        timeout=120,
    )
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    by_id = {a.get("id"): a for a in answers if a.get("id") is not None}
    unanswerable = [a["error"]["code"] for a in answers if a.get("id") is None]
    assert unanswerable == [-32700, -32600, -32600]  # not JSON, a batch, a scalar
    assert by_id[1]["error"]["code"] == -32601
    assert by_id[2]["error"]["code"] == -32602 and "cwd" in json.dumps(by_id[2]["error"])
    assert by_id[4]["error"]["code"] == -32602
    assert by_id[3]["result"]["protocolVersion"] == 1
    assert done.returncode == 0


def test_stdout_redirected_to_a_file_gets_the_answers(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`glm-lsp acp > file`: asyncio's pipe transport refuses a regular file, which used to end
    the agent before it answered anything."""
    import subprocess

    out = tmp_path / "answers.jsonl"
    request = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 1}}
    with out.open("wb") as stdout:
        done = subprocess.run(
            acp_command(tiny_model_dir, write_replies(tmp_path / "r.json", [])),
            input=json.dumps(request).encode() + b"\n",
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    (answer,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert answer["id"] == 1 and answer["result"]["protocolVersion"] == 1


@pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed")
async def test_run_command_runs_sandboxed_in_the_clients_terminal_after_permission(
    tiny_model_dir: Path, workspace: Path, tmp_path: Path
) -> None:
    run = (
        "Check the value.</think><tool_call>run_command<arg_key>command</arg_key>"
        "<arg_value>cat a.py && echo from-the-terminal</arg_value></tool_call>"
    )
    replies = write_replies(tmp_path / "r.json", [run, "Seen.</think>It printed A = 1."])
    client = RecordingClient(answers=["allow_once"])
    command = acp_command(tiny_model_dir, replies)
    async with acp_agent(client, command, terminal=True) as (conn, _, _):
        sid = (await conn.new_session(cwd=str(workspace), mcp_servers=[])).session_id
        await conn.prompt(session_id=sid, prompt=[text_block("What does a.py print?")])
    (tool_call, options) = client.permissions[0]
    assert tool_call.title == "Run `cat a.py && echo from-the-terminal`" and "allow_once" in options
    ((argv, _),) = client.terminals.values()
    # bwrap, after the prefix that joins the command's pids cgroup where glm-lsp can make one
    runs = argv[4:] if argv[:2] == ["/bin/sh", "-c"] and argv[3].endswith("cgroup.procs") else argv
    assert runs[0].endswith("bwrap") and argv[-1] == "cat a.py && echo from-the-terminal"
    assert client.released == ["term-1"]
    refs = [c for u in client.of_kind("tool_call_update") for c in u.content or []]
    assert any(c.type == "terminal" and c.terminal_id == "term-1" for c in refs)
    tool_result = log_of(workspace, sid)[0]["messages"][2]
    assert tool_result["role"] == "tool"
    assert tool_result["content"] == "exit code 0\nA = 1\nfrom-the-terminal\n"


async def test_a_plan_in_the_answer_becomes_a_plan_update(
    tiny_model_dir: Path, workspace: Path, tmp_path: Path
) -> None:
    planned = (
        "Two steps.</think>My plan:\n1. Read a.py\n2. Explain A\n"
        "<tool_call>read_file<arg_key>path</arg_key><arg_value>a.py</arg_value></tool_call>"
    )
    replies = write_replies(tmp_path / "r.json", [planned, "Read.</think>A is 1."])
    client = RecordingClient()
    async with acp_agent(client, acp_command(tiny_model_dir, replies)) as (conn, _, _):
        sid = (await conn.new_session(cwd=str(workspace), mcp_servers=[])).session_id
        await conn.prompt(session_id=sid, prompt=[text_block("What is A?")])
    (plan,) = client.of_kind("plan")
    assert [(e.content, e.status) for e in plan.entries] == [
        ("Read a.py", "pending"),
        ("Explain A", "pending"),
    ]
    kinds = [u.session_update for _, u in client.updates]
    assert kinds.index("plan") < kinds.index("tool_call")


def test_plans_are_lists_of_two_or_more_and_checked_items_are_done() -> None:
    from glm_lsp.acp.plan import parse_plan

    assert parse_plan("1. only one step") is None
    assert parse_plan("We have 2. options here") is None
    entries = parse_plan("- [x] rename foo\n- [ ] update callers\n")
    assert [(e.content, e.status) for e in entries] == [
        ("rename foo", "completed"),
        ("update callers", "pending"),
    ]


async def test_the_clients_mcp_servers_become_tools_asked_through_the_client(
    tiny_model_dir: Path, workspace: Path, tmp_path: Path
) -> None:
    from acp.schema import McpServerStdio

    server = str(Path(__file__).with_name("mcp_test_server.py"))
    call = (
        "Store it.</think><tool_call>notes__remember<arg_key>text</arg_key>"
        "<arg_value>hello</arg_value></tool_call>"
    )
    replies = write_replies(tmp_path / "r.json", [call, "Stored.</think>Done."])
    # the repository's own .mcp.json: its question carries every header, ${VAR} unexpanded
    header = {"Authorization": "Bearer ${OPENAI_API_KEY}"}
    planted = {"api": {"url": "http://127.0.0.1:9/mcp", "headers": header}}
    (workspace / ".mcp.json").write_text(json.dumps({"mcpServers": planted}))
    client = RecordingClient(answers=["reject_once", "allow_once"])
    async with acp_agent(client, acp_command(tiny_model_dir, replies)) as (conn, _, _):
        with pytest.raises(RequestError) as bad:
            await conn.new_session(
                cwd=str(workspace),
                mcp_servers=[McpServerStdio(name="bad name!", command="x", args=[], env=[])],
            )
        assert "mcpServers" in str(bad.value)
        notes = McpServerStdio(name="notes", command=sys.executable, args=[server], env=[])
        sid = (await conn.new_session(cwd=str(workspace), mcp_servers=[notes])).session_id
        await conn.prompt(session_id=sid, prompt=[text_block("Remember hello")])
    (question, _), (tool_call, options) = client.permissions
    assert question.title.startswith("This workspace's .mcp.json wants to start MCP servers.")
    (shown,) = [c.content.text for c in question.content]
    assert f'- api: url "http://127.0.0.1:9/mcp", headers {json.dumps(header)}' in shown
    assert "reads your environment variables OPENAI_API_KEY" in shown
    assert "notes__remember" in tool_call.title and options[0] == "allow_once"
    assert tool_call.content[0].content.text.startswith("GLM wants to call the MCP tool")
    result = log_of(workspace, sid)[0]["messages"][2]
    assert result["role"] == "tool" and "remembered 'hello'" in result["content"]
    (started,) = [u for u in client.of_kind("tool_call") if u.title.startswith("notes__")]
    assert started.kind == "other"


async def test_a_failed_tool_call_is_reported_failed_live_and_when_replayed(
    tiny_model_dir: Path, workspace: Path, tmp_path: Path
) -> None:
    missing = (
        "Is there a c.py?</think>"
        "<tool_call>read_file<arg_key>path</arg_key><arg_value>c.py</arg_value></tool_call>"
    )
    replies = write_replies(tmp_path / "r.json", [missing, READ, ANSWER])
    client = RecordingClient()
    async with acp_agent(client, acp_command(tiny_model_dir, replies)) as (conn, _, _):
        session = await conn.new_session(cwd=str(workspace), mcp_servers=[])
        sid = session.session_id
        await conn.prompt(session_id=sid, prompt=[text_block("What is in c.py and a.py?")])
    live = [u.status for u in client.of_kind("tool_call_update")]
    assert live == ["failed", "completed"]

    later = RecordingClient()
    async with acp_agent(later, acp_command(tiny_model_dir, replies)) as (conn, _, _):
        await conn.load_session(cwd=str(workspace), session_id=sid, mcp_servers=[])
    assert [u.status for u in later.of_kind("tool_call_update")] == live
