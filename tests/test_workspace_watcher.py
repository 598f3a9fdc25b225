"""The real watchdog observer on temporary directories keeps the index current."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from glm_lsp.workspace import Change, WorkspaceIndex, WorkspaceWatcher

# watchdog warns when a fresh directory tree races its own recursive watch setup: benign.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll with a deadline: fast when the watcher is fast, bounded when it is not."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Path, WorkspaceIndex, WorkspaceWatcher]]:
    (tmp_path / ".gitignore").write_text("*.tmp\nbuild/\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a.py").write_text("def a():\n    pass\n")
    index = WorkspaceIndex(tmp_path)
    index.scan()
    watcher = WorkspaceWatcher(index, debounce_s=0.02)
    watcher.start()
    try:
        yield tmp_path, index, watcher
    finally:
        watcher.stop()


def test_create_modify_rename_delete(watched) -> None:
    root, index, _watcher = watched
    g0 = index.generation
    (root / "src/b.py").write_text("def b():\n    return 1\n")
    wait_for(lambda: "src/b.py" in index.files())
    assert [s.name for s in index.outline("src/b.py")] == ["b"]

    g1 = index.generation
    (root / "src/b.py").write_text("def b2():\n    return 2\n")
    wait_for(lambda: Change("src/b.py", "modified") in index.changes_since(g1))
    assert [s.name for s in index.outline("src/b.py")] == ["b2"]  # re-parsed: new content hash

    (root / "src/b.py").rename(root / "src/c.py")
    wait_for(lambda: "src/c.py" in index.files() and "src/b.py" not in index.files())

    (root / "src/a.py").unlink()
    wait_for(lambda: "src/a.py" not in index.files())
    assert index.search("def") == ["src/c.py:1: def b2():"]
    assert index.changes_since(g0) == [
        Change("src/a.py", "deleted"),
        Change("src/c.py", "created"),
    ]  # b.py came and went inside the window


def test_directories_move_with_their_files(watched) -> None:
    root, index, _watcher = watched
    (root / "pkg/sub").mkdir(parents=True)
    (root / "pkg/sub/m.go").write_text("package sub\n")
    wait_for(lambda: "pkg/sub/m.go" in index.files())
    (root / "pkg").rename(root / "lib")
    wait_for(lambda: index.list_files("lib") == ["lib/sub/m.go"] and not index.list_files("pkg"))


def test_ignored_files_never_appear(watched) -> None:
    root, index, watcher = watched
    (root / "scratch.tmp").write_text("x")
    (root / "build").mkdir()
    (root / "build/out.py").write_text("x")
    (root / ".git").mkdir()
    (root / ".git/HEAD").write_text("ref")
    (root / "marker.py").write_text("x")  # written last: once it shows, the rest was seen
    wait_for(lambda: "marker.py" in index.files())
    assert watcher.wait_idle(2.0)
    assert index.files() == [".gitignore", "marker.py", "src/a.py"]


def test_new_gitignore_applies_to_its_subtree(watched) -> None:
    root, index, _watcher = watched
    (root / "src/gen.py").write_text("x")
    wait_for(lambda: "src/gen.py" in index.files())
    (root / "src/.gitignore").write_text("gen.py\n")
    wait_for(lambda: "src/gen.py" not in index.files())
    assert "src/.gitignore" in index.files()
    (root / ".ignore").write_text("src/\n")
    wait_for(lambda: index.list_files("src") == [])


def test_client_events_via_notify(tmp_path: Path) -> None:
    index = WorkspaceIndex(tmp_path)
    index.scan()
    watcher = WorkspaceWatcher(index, debounce_s=0.01)
    watcher.start(observe=False)  # client-only setup: every event comes through notify()
    try:
        (tmp_path / "n.lua").write_text("local function f() end\n")
        watcher.notify([(str(tmp_path / "n.lua"), "created"), ("/elsewhere/x.py", "created")])
        wait_for(lambda: index.files() == ["n.lua"])
        g = index.generation
        watcher.notify([(str(tmp_path / "n.lua"), 2)])  # lsprotocol FileChangeType.Changed
        wait_for(lambda: index.changes_since(g) == [Change("n.lua", "modified")])
        os.remove(tmp_path / "n.lua")
        watcher.notify([(str(tmp_path / "n.lua"), "deleted")])
        wait_for(lambda: index.files() == [])
    finally:
        watcher.stop()


def test_stop_is_prompt(tmp_path: Path) -> None:
    index = WorkspaceIndex(tmp_path)
    watcher = WorkspaceWatcher(index)
    watcher.start()
    started = time.monotonic()
    watcher.stop()
    assert time.monotonic() - started < 2.5


def test_burst_in_new_directories_then_rmtree(watched) -> None:
    root, index, _watcher = watched
    for d in range(10):  # files land before the observer can watch the new directories
        sub = root / "gen" / f"d{d}" / "deep"
        sub.mkdir(parents=True)
        for f in range(20):
            (sub / f"f{f}.rs").write_text("fn main() {}\n")
    wait_for(lambda: len(index.list_files("gen")) == 200)
    shutil.rmtree(root / "gen")
    wait_for(lambda: index.list_files("gen") == [])


def test_a_running_watcher_settles_the_index_and_stopping_it_says_so(tmp_path: Path) -> None:
    """index.settle is how the shadow workspace knows the journal lists every change."""
    index = WorkspaceIndex(tmp_path)
    index.scan()
    assert index.settle is None
    watcher = WorkspaceWatcher(index, debounce_s=0.02)
    watcher.start()
    try:
        assert index.settle is not None
        (tmp_path / "a.py").write_text("A = 1\n")
        wait_for(lambda: "a.py" in index.files())
        assert index.settle(1.0) is True
    finally:
        watcher.stop()
    assert index.settle is None
    unobserved = WorkspaceWatcher(index)
    unobserved.start(observe=False)  # only the client's events: the journal may miss changes
    try:
        assert index.settle is None
    finally:
        unobserved.stop()
