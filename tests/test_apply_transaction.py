"""`run --apply` is all or nothing: impossible change sets are refused at tool time, a failed write
puts everything back (and the request is still logged), `glm-lsp undo` reverts, new files follow
the umask, version-control folders are never written, and files that run code on their own are
written only with --allow-sensitive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from glm_lsp import cli
from glm_lsp.agent.edits import ApplyFailed, Overlay, apply_to_disk
from glm_lsp.agent.files import Workspace
from glm_lsp.agent.tools import ToolBox
from glm_lsp.core.results import edit_changes
from glm_lsp.glm.parse import tool_call_text
from glm_lsp.state_files import workspace_state
from glm_lsp.wire.converter import converter
from glm_lsp.workspace import WorkspaceIndex

FILES = {"a.txt": "alpha\n", "b.txt": "beta\n", "c.txt": "gamma\n", "README.md": "# hi\n"}
THREE_EDITS = [
    "Edit three files.</think>"
    + "".join(
        tool_call_text("write_file", {"path": name, "content": name.upper() + "\n"})
        for name in ("a.txt", "b.txt", "new/c2.txt")
    ),
    "Done.</think>Rewrote them.",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    for name, text in FILES.items():
        (ws / name).write_text(text)
    script = ws / "tool.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o750)
    return ws


def make_box(root: Path) -> ToolBox:
    ws = Workspace(root, root / ".glm-lsp")
    index = WorkspaceIndex(root)
    index.scan()
    return ToolBox(ws, index, Overlay(ws))


def snapshot(root: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every path with its bytes and mode (None for a folder), the state dir aside."""
    out: dict[str, tuple[bytes, int] | None] = {}
    for p in sorted(root.rglob("*")):
        if ".glm-lsp" in p.relative_to(root).parts:
            continue
        rel = p.relative_to(root).as_posix()
        out[rel] = (p.read_bytes(), p.stat().st_mode & 0o7777) if p.is_file() else None
    return out


# -- at tool time ------------------------------------------------------------------------------
def test_a_file_and_a_file_under_it_are_refused_in_either_order(root: Path) -> None:
    box = make_box(root)
    assert box.run("write_file", {"path": "notes", "content": "n\n"}).startswith("created")
    refused = box.run("write_file", {"path": "notes/inner.txt", "content": "i\n"})
    assert refused.startswith("Error: 'notes/inner.txt' would be inside 'notes', which is a file")

    box = make_box(root)
    assert box.run("write_file", {"path": "notes/inner.txt", "content": "i\n"}).startswith(
        "created"
    )
    refused = box.run("write_file", {"path": "notes", "content": "n\n"})
    assert refused.startswith("Error: 'notes' is the folder of the pending file 'notes/inner.txt'")
    refused = box.run("rename_file", {"path": "a.txt", "new_path": "notes"})
    assert refused.startswith("Error: 'notes' is the folder of the pending file"), refused
    assert [c.path for c in box.overlay.change_set().changes] == ["notes/inner.txt"]

    box = make_box(root)
    under_file = box.run("write_file", {"path": "README.md/x.txt", "content": "x\n"})
    assert under_file.startswith("Error: 'README.md/x.txt'"), under_file
    box.run("delete_file", {"path": "README.md"})  # still a file on disk until applied
    under_deleted = box.run("write_file", {"path": "README.md/x.txt", "content": "x\n"})
    assert under_deleted.startswith("Error:"), under_deleted


@pytest.mark.parametrize(
    "path", [".hg/hgrc", ".jj/repo/store", ".svn/entries", ".HG/hgrc", ".s\u200cvn/x", "SVN~1/x"]
)
def test_other_version_control_folders_are_never_written(root: Path, path: str) -> None:
    result = make_box(root).run("write_file", {"path": path, "content": "x"})
    assert result.startswith("Error:") and "never write version control internals" in result
    assert result.split("inside ")[1].split(":")[0] in (".hg", ".jj", ".svn")


def test_sensitive_changes_are_marked_for_the_editor(root: Path) -> None:
    box = make_box(root)
    box.run("write_file", {"path": ".github/workflows/ci.yml", "content": "on: push\n"})
    box.run("write_file", {"path": "a.txt", "content": "A\n"})

    class Folder:
        def uri(self, rel: str) -> str:
            return f"file:///ws/{rel}"

    changes = converter.unstructure(edit_changes(Folder(), box.overlay.change_set()))  # type: ignore[arg-type]
    by_uri = {c["uri"]: c for c in changes}
    assert by_uri["file:///ws/.github/workflows/ci.yml"]["sensitive"] is True
    assert "sensitive" not in by_uri["file:///ws/a.txt"]


# -- at apply time -----------------------------------------------------------------------------
def fail_on(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """os.replace fails for one target, as a full disk or a permission error would (CI runs as
    root, which no read-only folder stops)."""
    real = os.replace

    def replace(src: Any, dst: Any, **kw: Any) -> None:
        if Path(dst).name == name and ".glm-lsp" not in Path(dst).parts:
            raise OSError(28, "No space left on device")
        real(src, dst, **kw)

    monkeypatch.setattr(os, "replace", replace)


def test_a_failed_write_puts_everything_back(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = make_box(root)
    box.run("write_file", {"path": "a.txt", "content": "A\n"})
    box.run("delete_file", {"path": "tool.sh"})
    box.run("rename_file", {"path": "c.txt", "new_path": "deep/er/c.txt"})
    box.run("write_file", {"path": "b.txt", "content": "B\n"})
    box.run("write_file", {"path": "new/z.txt", "content": "Z\n"})
    before = snapshot(root)
    fail_on(monkeypatch, "b.txt")  # the last of them: all the others were already in place
    with pytest.raises(ApplyFailed, match=r"writing 'b.txt' failed .*nothing was changed"):
        apply_to_disk(root, box.overlay.change_set(), root / ".glm-lsp")
    assert snapshot(root) == before  # bytes, modes, no new folders, no temp or backup files


def test_run_apply_failure_is_rolled_back_logged_and_exits_3(
    root: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    replies = root.parent / "replies.json"
    replies.write_text(json.dumps(THREE_EDITS))
    before = snapshot(root)
    fail_on(monkeypatch, "a.txt")  # the second of three (creates go first, then modifies)
    code = cli.main(
        [
            "run", str(root), "shout", "--model", str(tiny_model_dir), "--scripted-replies",
            str(replies), "--apply", "--no-persist-kv-cache",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 3, err
    assert "Traceback" not in err
    assert (
        "not applied: writing 'a.txt' failed (No space left on device); nothing was changed" in err
    )
    assert snapshot(root) == before
    (record,) = [json.loads(x) for x in (root / ".glm-lsp" / "thinking.jsonl").open()]
    assert record["applied"] is False and "a.txt" in record["failureReason"]
    assert not (workspace_state(root) / "edits.json").exists()  # nothing to undo


# -- through the real CLI ----------------------------------------------------------------------
def glm_lsp(*args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "glm_lsp.cli", *args]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        preexec_fn=lambda: os.umask(umask),
    )


def run_apply(
    root: Path, model: Path, replies: list[str], *extra: str
) -> subprocess.CompletedProcess[str]:
    script = root.parent / "replies.json"
    script.write_text(json.dumps(replies))
    return glm_lsp(
        "run", str(root), "do it", "--model", str(model), "--scripted-replies", str(script),
        "--apply", "--no-persist-kv-cache", *extra,
    )  # fmt: skip


def test_run_apply_then_undo_with_modes_and_a_refused_conflict(
    root: Path, tiny_model_dir: Path
) -> None:
    replies = [
        "Tidy up.</think>"
        + tool_call_text("write_file", {"path": "notes", "content": "n\n"})
        + tool_call_text("write_file", {"path": "notes/inner.txt", "content": "i\n"})
        + tool_call_text("delete_file", {"path": "tool.sh"})
        + tool_call_text("write_file", {"path": "a.txt", "content": "A\n"}),
        "Done.</think>Tidied.",
    ]
    before = snapshot(root)
    out = run_apply(root, tiny_model_dir, replies)
    assert out.returncode == 0, out.stderr
    assert "edit: 3 file(s), applied" in out.stderr
    assert (root / "notes").stat().st_mode & 0o777 == 0o644  # the umask's, not mkstemp's 0600
    assert not (root / "tool.sh").exists() and (root / "a.txt").read_text() == "A\n"
    (record,) = [json.loads(x) for x in (root / ".glm-lsp" / "thinking.jsonl").open()]
    results = [m["content"] for m in record["messages"] if m["role"] == "tool"]
    assert results[1].startswith("Error: 'notes/inner.txt' would be inside 'notes'"), results

    (root / "a.txt").write_text("changed by the user\n")
    refused = glm_lsp("undo", str(root))
    assert refused.returncode == 3 and "not undone: a.txt changed since the edit" in refused.stderr
    (root / "a.txt").write_text("A\n")

    undone = glm_lsp("undo", str(root))
    assert undone.returncode == 0, undone.stderr
    assert snapshot(root) == before  # tool.sh is back with its 0750


def test_sensitive_files_are_applied_only_with_allow_sensitive(
    root: Path, tiny_model_dir: Path
) -> None:
    replies = [
        "Add CI.</think>"
        + tool_call_text(
            "write_file", {"path": ".github/workflows/ci.yml", "content": "on: push\n"}
        )
        + tool_call_text("write_file", {"path": "a.txt", "content": "A\n"}),
        "Done.</think>Added CI.",
    ]
    before = snapshot(root)
    out = run_apply(root, tiny_model_dir, replies)
    assert out.returncode == 3, out.stderr
    assert "sensitive: runs code on its own: .github/workflows/ci.yml" in out.stderr
    assert "--allow-sensitive" in out.stderr
    assert snapshot(root) == before  # all or nothing: a.txt is not written either

    out = run_apply(root, tiny_model_dir, replies, "--allow-sensitive")
    assert out.returncode == 0, out.stderr
    assert (root / ".github/workflows/ci.yml").read_text() == "on: push\n"
    assert (root / "a.txt").read_text() == "A\n"
