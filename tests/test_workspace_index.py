"""WorkspaceIndex without the watcher: ignore rules, listing, search, odd files, change journal."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from glm_lsp.workspace import Change, WorkspaceIndex
from glm_lsp.workspace import search as search_module
from glm_lsp.workspace.watcher import ChangeJournal


def write(root: Path, rel: str, text: str | bytes = "x\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    write(tmp_path, ".gitignore", "build/\n*.log\nnode_modules\n/rootonly.txt\n")
    write(tmp_path, ".ignore", "scratch/\n")
    write(tmp_path, ".git/info/exclude", "local-notes.md\n")
    write(tmp_path, ".git/config", "needle\n")
    write(tmp_path, ".glm-lsp/log.jsonl", "needle\n")
    write(tmp_path, "src/main.py", "def main():\n    return 'needle'\n")
    write(tmp_path, "src/util.ts", "export const needle = 1;\n")
    write(tmp_path, "src/.gitignore", "secret.py\n!keep.log\n")
    write(tmp_path, "src/secret.py", "needle\n")
    write(tmp_path, "src/keep.log", "needle in a kept log\n")
    write(tmp_path, "src/deep/x.log", "needle\n")
    write(tmp_path, "src/deep/rootonly.txt", "needle\n")  # "/rootonly.txt" is anchored
    write(tmp_path, "build/out.py", "needle\n")
    write(tmp_path, "node_modules/pkg/index.js", "needle\n")
    write(tmp_path, "scratch/tmp.py", "needle\n")
    write(tmp_path, "rootonly.txt", "needle\n")
    write(tmp_path, "local-notes.md", "needle\n")
    write(tmp_path, "docs/readme.md", "No match here.\n")
    return tmp_path


VISIBLE = [
    ".gitignore",
    ".ignore",
    "docs/readme.md",
    "src/.gitignore",
    "src/deep/rootonly.txt",
    "src/keep.log",
    "src/main.py",
    "src/util.ts",
]


def test_scan_respects_every_ignore_source(ws: Path) -> None:
    ix = WorkspaceIndex(ws)
    ix.scan()
    assert ix.files() == VISIBLE
    assert ix.list_files() == VISIBLE
    for rel in ["src/secret.py", "build/out.py", "scratch/tmp.py", "local-notes.md", ".git/config"]:
        assert ix.is_ignored(rel), rel
    assert not ix.is_ignored("src/keep.log")  # nested negation beats the root "*.log"
    assert ix.is_ignored("../elsewhere.py")


def test_search_never_returns_ignored_files(ws: Path) -> None:
    ix = WorkspaceIndex(ws)
    hits = ix.search("needle")
    assert hits == [
        "src/deep/rootonly.txt:1: needle",
        "src/keep.log:1: needle in a kept log",
        "src/main.py:2:     return 'needle'",
        "src/util.ts:1: export const needle = 1;",
    ]


def test_list_files_path_and_glob(ws: Path) -> None:
    ix = WorkspaceIndex(ws)
    ix.scan()
    assert ix.list_files("src", "*.py") == ["src/main.py"]
    assert ix.list_files(glob="src/**/*.ts") == ["src/util.ts"]
    assert ix.list_files("src", "*.{py,ts}") == ["src/main.py", "src/util.ts"]
    assert ix.list_files("src", "deep/*") == ["src/deep/rootonly.txt"]  # relative to path
    assert ix.list_files("src/main.py") == ["src/main.py"]
    assert ix.list_files("./src/deep/") == ["src/deep/rootonly.txt"]
    assert ix.list_files("nowhere") == []
    with pytest.raises(ValueError):
        ix.list_files("../up")


def test_search_regex_path_and_limits(ws: Path) -> None:
    ix = WorkspaceIndex(ws)
    assert ix.search(r"^def \w+", regex=True) == ["src/main.py:1: def main():"]
    assert ix.search("needle", path="src/main.py") == ["src/main.py:2:     return 'needle'"]
    assert len(ix.search("needle", max_results=2)) == 2
    assert ix.search("NEEDLE") == []  # literal search is case-sensitive
    with pytest.raises(ValueError, match=r"invalid regular expression '\(unclosed'"):
        ix.search("(unclosed", regex=True)
    with pytest.raises(ValueError, match="empty"):
        ix.search("")


def test_search_reads_through_caller_view(ws: Path) -> None:
    ix = WorkspaceIndex(ws)
    overlay = {"src/main.py": "needle from a buffer\n", "src/new.py": "x = 'needle'\n"}

    def read_text(rel: str) -> str | None:
        if rel == "src/util.ts":
            return None  # deleted by a pending edit
        if rel == "src/keep.log":
            raise RuntimeError("caller refuses this file")
        return overlay.get(rel) or (ws / rel).read_text()

    hits = ix.search("needle", read_text=read_text, extra_files=["src/new.py", "build/x.py"])
    assert hits == [
        "src/deep/rootonly.txt:1: needle",
        "src/main.py:1: needle from a buffer",
        "src/new.py:1: x = 'needle'",
    ]


def test_odd_files_are_skipped_without_crash(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, "ok.py", "needle = 1\n")
    write(tmp_path, "image.bin", b"needle\x00\x01\x02")
    write(tmp_path, "huge.py", "needle = 1\n" + "x = 2\n" * 400)
    write(tmp_path, "locked.py", "needle = 3\n")
    os.symlink("loop_b", tmp_path / "loop_a")
    os.symlink("loop_a", tmp_path / "loop_b")
    os.symlink(".", tmp_path / "self_dir")  # a directory loop
    os.symlink("/etc/hostname", tmp_path / "outside")  # leaves the root: not followed
    os.symlink("ok.py", tmp_path / "alias.py")  # inside the root: kept
    os.mkfifo(tmp_path / "pipe.py")
    real_open = os.open

    def deny(path, flags, *args):  # root can read anything: simulate a permission error
        if str(path).endswith("locked.py"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(search_module.os, "open", deny)
    ix = WorkspaceIndex(tmp_path, max_file_bytes=1000)
    ix.scan()
    assert ix.files() == ["alias.py", "huge.py", "image.bin", "locked.py", "ok.py"]
    assert ix.search("needle") == ["alias.py:1: needle = 1", "ok.py:1: needle = 1"]
    assert ix.outline("huge.py") == []  # listed but never parsed
    assert ix.outline("loop_a.py") == []


def test_apply_change_and_journal(ws: Path) -> None:
    ix = WorkspaceIndex(ws)
    ix.scan()
    g0 = ix.generation
    write(ws, "src/new.py", "def new():\n    pass\n")
    ix.apply_change("created", "src/new.py")
    write(ws, "src/main.py", "def main():\n    return 2\n")
    ix.apply_change("modified", "src/main.py")
    write(ws, "build/ignored.py")
    ix.apply_change("created", "build/ignored.py")  # ignored: no trace
    assert "src/new.py" in ix.files() and "build/ignored.py" not in ix.files()
    g1 = ix.generation
    assert g1 > g0
    (ws / "src/util.ts").rename(ws / "src/renamed.ts")
    ix.apply_change("moved", "src/util.ts", "src/renamed.ts")
    assert "src/util.ts" not in ix.files() and "src/renamed.ts" in ix.files()
    (ws / "src/new.py").unlink()
    ix.apply_change("deleted", "src/new.py")
    assert ix.changes_since(g0) == [
        Change("src/main.py", "modified"),
        Change("src/renamed.ts", "created"),
        Change("src/util.ts", "deleted"),
    ]  # src/new.py was created and deleted in the window: no net change
    assert ix.changes_since(g1) == [
        Change("src/new.py", "deleted"),
        Change("src/renamed.ts", "created"),
        Change("src/util.ts", "deleted"),
    ]
    assert ix.changes_since(ix.generation) == []
    with pytest.raises(ValueError):
        ix.apply_change("exploded", "src/main.py")


def test_journal_coalescing_rules(tmp_path: Path) -> None:
    ix = WorkspaceIndex(tmp_path)
    ix.scan()
    a = write(tmp_path, "a.py")
    ix.apply_change("created", "a.py")
    ix.apply_change("modified", "a.py")
    ix.apply_change("modified", "a.py")
    assert ix.changes_since(0) == [Change("a.py", "created")]
    g = ix.generation
    a.unlink()
    ix.apply_change("deleted", "a.py")
    write(tmp_path, "a.py", "again\n")
    ix.apply_change("created", "a.py")
    assert ix.changes_since(g) == [Change("a.py", "modified")]  # deleted then re-created


def test_directory_changes_and_gitignore_edits(ws: Path) -> None:
    ix = WorkspaceIndex(ws)
    ix.scan()
    write(ws, "pkg/a.py")
    write(ws, "pkg/sub/b.py")
    write(ws, "pkg/sub/c.log")
    ix.apply_change("created", "pkg")
    assert ix.list_files("pkg") == ["pkg/a.py", "pkg/sub/b.py"]
    (ws / "pkg").rename(ws / "lib")
    ix.apply_change("moved", "pkg", "lib")
    assert ix.list_files("pkg") == [] and ix.list_files("lib") == ["lib/a.py", "lib/sub/b.py"]
    write(ws, "lib/.gitignore", "sub/\n")
    ix.apply_change("created", "lib/.gitignore")
    assert ix.list_files("lib") == ["lib/.gitignore", "lib/a.py"]
    (ws / "lib/.gitignore").unlink()
    ix.apply_change("deleted", "lib/.gitignore")
    assert ix.list_files("lib") == ["lib/a.py", "lib/sub/b.py"]
    write(ws, ".git/info/exclude", "")
    ix.apply_change("modified", ".git/info/exclude")
    assert "local-notes.md" in ix.files()


def test_directory_removed_or_replaced_by_a_file(tmp_path: Path) -> None:
    ix = WorkspaceIndex(tmp_path)
    write(tmp_path, "d/a.py")
    write(tmp_path, "d/e/b.py")
    ix.scan()
    shutil.rmtree(tmp_path / "d")
    write(tmp_path, "d", "now a file\n")
    ix.apply_change("created", "d")
    assert ix.files() == ["d"]
    (tmp_path / "d").unlink()
    write(tmp_path, "d/c.py")
    ix.apply_change("created", "d")
    assert ix.files() == ["d/c.py"]
    shutil.rmtree(tmp_path / "d")
    ix.apply_change("deleted", "d")
    assert ix.files() == []


def test_journal_says_when_it_no_longer_covers_a_generation(tmp_path: Path) -> None:
    """The journal is bounded: a reader whose generation fell out of it must rescan."""
    journal = ChangeJournal(maxlen=2)
    assert journal.covers(0)
    for path in ("a", "b", "c"):
        journal.record("modified", path)
    assert not journal.covers(0)  # the change to "a" was dropped
    assert journal.covers(1) and journal.covers(3)
    ix = WorkspaceIndex(tmp_path)
    ix.scan()
    assert ix.journal_covers(ix.generation)
