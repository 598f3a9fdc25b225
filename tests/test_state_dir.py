"""The state dir holds the thinking log and the KV cache: private, also when it already existed."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

from glm_lsp.memory.thinking_log import prepare_state_dir
from tests.test_agent_run import run_cli, workspace, write_replies  # noqa: F401  (fixture)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_existing_state_dir_is_tightened_by_a_run(
    workspace: Path,  # noqa: F811
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    state = prepare_state_dir(workspace / ".glm-lsp")  # made by glm-lsp here
    state.chmod(0o755)  # as an older version or a umask of 022 left it
    out = run_cli(
        workspace,
        tiny_model_dir,
        write_replies(tmp_path / "r.json", ["Nothing needs changing.</think>Nothing to do."]),
    )
    assert out.returncode == 0, out.stderr
    assert mode(state) == 0o700


def test_a_shared_folder_as_state_dir_is_reported_not_chmodded(tmp_path: Path, caplog) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "someone-elses.txt").write_text("x")
    shared.chmod(0o755)
    with caplog.at_level(logging.WARNING):
        prepare_state_dir(shared)
    assert mode(shared) == 0o755
    assert "readable by other users" in caplog.text
