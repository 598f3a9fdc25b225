"""`glm-lsp acp` driven by the official TypeScript ACP SDK (tests/acp_node/acp.test.mjs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acp_client import write_replies
from tests.test_acp import DONE, EDIT_A, READ, WRITE_B

NODE_TEST = Path(__file__).parent / "acp_node"
pytestmark = pytest.mark.slow


def test_the_typescript_sdk_drives_a_prompt_with_edits(tiny_model_dir: Path, tmp_path: Path):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the TypeScript ACP client test (node 20+)")
    if not (NODE_TEST / "node_modules" / "@agentclientprotocol" / "sdk").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_TEST, check=True, timeout=300
        )
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "a.py").write_text("A = 1\n", encoding="utf-8")
    replies = write_replies(tmp_path / "r.json", [READ, EDIT_A, WRITE_B, DONE])
    env = os.environ | {
        "GLM_ACP_PYTHON": sys.executable,
        "GLM_ACP_MODEL": str(tiny_model_dir),
        "GLM_ACP_REPLIES": str(replies),
        "GLM_ACP_WORKSPACE": str(workspace),
        # the checkout under test, also when it is not the one installed in the venv
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH")) if p
        ),
    }
    done = subprocess.run(
        ["node", "--test", "acp.test.mjs"],
        cwd=NODE_TEST,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    print(done.stdout[-3000:], done.stderr[-3000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "# pass 1" in done.stdout and "# fail 0" in done.stdout
