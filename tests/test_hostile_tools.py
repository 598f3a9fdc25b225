"""A hostile model against the tools: every call is refused with a reason or stays inside.

Each call runs through ToolBox against a workspace full of traps (symlinks out, loops, a FIFO, a
device, a hard link, .git and the state dir), next to a sibling directory holding "secrets".
After each call the request's change set is applied to disk as `glm-lsp run --apply` would, and
the whole tmp tree is compared with its snapshot: only the workspace's own files may change, and
never `.git` or the state dir. A last test runs hostile calls through a real `glm-lsp run`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glm_lsp.agent.edits import Overlay, apply_to_disk
from glm_lsp.agent.files import ToolError, Workspace
from glm_lsp.agent.tools import MAX_CHARS, ToolBox
from glm_lsp.glm.parse import tool_call_text
from glm_lsp.state_files import prepare_state_dir, workspace_state
from glm_lsp.workspace import WorkspaceIndex
from glm_lsp.workspace.ignore import compile_glob
from tests.lsp_wire import start_server

SECRET = "TOP SECRET"
A_PY = "def foo():\n    return 1\n"
MAX_RESULT = MAX_CHARS + 2_000  # every tool answer is bounded, whatever was asked


def build_world(tmp: Path) -> tuple[Path, Path]:
    """tmp/outside (the secrets) and tmp/ws (the workspace with its traps)."""
    outside = tmp / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_text(SECRET)
    (outside / "secret.py").write_text(f"KEY = '{SECRET}'\n")
    (outside / "dir" / "deep.txt").write_text(SECRET)
    (outside / "hard.txt").write_text("shared\n")  # readable inside; never written through

    ws = tmp / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "a.py").write_text(A_PY)
    (ws / "notes.txt").write_text("notes\n")
    prepare_state_dir(ws / ".glm-lsp")  # the user's own, made by glm-lsp: its log is loaded
    for rel, text in {
        ".git/config": "[core]\n",
        ".git/HEAD": "ref: refs/heads/main\n",
        ".git/hooks/README": "hooks\n",
        "sub/.git/config": "[core]\n",  # a nested repository
        ".glm-lsp/thinking.jsonl": "",
        ".glm-lsp/kv-cache.safetensors": "not really\n",
        ".glm-lsp/.gitignore": "*\n",
    }.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(text)
    links = {
        "link.txt": outside / "secret.txt",  # a file pointing out
        "escape": outside,  # a directory pointing out
        "up": Path(".."),  # relative, to the parent
        "zero": Path("/dev/zero"),
        "devdir": Path("/dev"),
        "loop1": Path("loop2"),
        "loop2": Path("loop1"),
        "self": Path("self"),
        "inner": Path("src"),  # stays inside: fine
        "gitlink": Path(".git"),
        "statelink": Path(".glm-lsp"),
    }
    for name, target in links.items():
        os.symlink(target, ws / name)
    os.mkfifo(ws / "fifo")
    os.link(outside / "hard.txt", ws / "hardlink.txt")
    return ws, outside


def snapshot(top: Path) -> dict[str, tuple]:
    """Every entry under top, symlinks not followed: kind, mode, size and content hash."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            info = path.lstat()
            rel = path.relative_to(top).as_posix()
            if stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[rel] = ("file", info.st_mode, info.st_size, digest)
            else:
                out[rel] = ("other", stat.S_IFMT(info.st_mode), info.st_mode)
    return out


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ws, self.outside = build_world(tmp)
        self.box = self.new_box()
        self.before = snapshot(tmp)

    def new_box(self) -> ToolBox:
        workspace = Workspace(self.ws, self.ws / ".glm-lsp")
        index = WorkspaceIndex(self.ws)
        index.scan()
        return ToolBox(workspace, index, Overlay(workspace))

    def call(self, tool: str, args: dict[str, Any]) -> str:
        result = self.box.run(tool, args)
        assert isinstance(result, str) and len(result) < MAX_RESULT, (tool, len(result))
        return result

    def apply_and_check(self, allowed: set[str] = frozenset()) -> None:
        """Write what the request proposes, as --apply would; then only `allowed` changed."""
        change_set = self.box.overlay.change_set()
        for change in change_set.changes:
            for path in (change.path, change.old_path):
                if path:
                    assert ".." not in path.split("/") and not path.startswith("/"), change
                    assert path.split("/")[0] not in (".git", ".glm-lsp"), change
        apply_to_disk(self.ws, change_set, self.ws / ".glm-lsp")
        after = snapshot(self.tmp)
        changed = {
            k for k in self.before.keys() | after.keys() if self.before.get(k) != after.get(k)
        }
        assert changed <= {f"ws/{p}" for p in allowed} | {
            # parent directories of created files change size and appear
            f"ws/{p.rsplit('/', i)[0]}"
            for p in allowed
            for i in range(1, p.count("/") + 1)
        }, changed
        assert (self.outside / "secret.txt").read_text() == SECRET


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


# (tool, arguments, substrings the error must contain: the path as given and the reason)
REFUSED: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    # traversal, every spelling
    ("read_file", {"path": "../outside/secret.txt"}, ("'../outside/secret.txt'", "'..'")),
    ("read_file", {"path": "src/../../outside/secret.txt"}, ("src/../../outside", "'..'")),
    ("read_file", {"path": "a/../../outside/secret.txt"}, ("a/../../outside", "'..'")),
    ("read_file", {"path": "..\\outside\\secret.txt"}, ("..\\outside\\secret.txt", "'..'")),
    ("read_file", {"path": "src\\..\\..\\outside\\secret.txt"}, ("src\\..\\..", "'..'")),
    ("read_file", {"path": "./../outside/secret.txt"}, ("./../outside", "'..'")),
    ("read_file", {"path": "  ../outside/secret.txt \n"}, ("'../outside/secret.txt'", "'..'")),
    ("read_file", {"path": "src/./../../outside/secret.txt"}, ("src/./../..", "'..'")),
    ("read_file", {"path": "src//..//..//outside/secret.txt"}, ("src//..//..", "'..'")),
    ("read_file", {"path": "src/..\\../outside/secret.txt"}, ("src/..\\..", "'..'")),
    ("read_file", {"path": "../ws/../outside/secret.txt"}, ("../ws/../outside", "'..'")),
    ("write_file", {"path": "../outside/evil.py", "content": "x"}, ("../outside/evil.py", "'..'")),
    (
        "edit_file",
        {"path": "../outside/secret.txt", "old_text": "TOP", "new_text": "NOT"},
        ("../outside/secret.txt", "'..'"),
    ),
    ("delete_file", {"path": "../outside/secret.txt"}, ("../outside/secret.txt", "'..'")),
    ("list_files", {"path": ".."}, ("'..'", "inside the workspace")),
    ("search", {"pattern": "SECRET", "path": "../outside"}, ("../outside", "'..'")),
    ("outline", {"path": "../outside/secret.py"}, ("../outside/secret.py", "'..'")),
    # absolute paths, every spelling
    ("read_file", {"path": "/etc/passwd"}, ("'/etc/passwd'", "absolute")),
    ("read_file", {"path": "~/.ssh/id_rsa"}, ("~/.ssh/id_rsa", "absolute")),
    ("read_file", {"path": "~root/.bashrc"}, ("~root/.bashrc", "absolute")),
    ("read_file", {"path": "\\etc\\passwd"}, ("\\etc\\passwd", "absolute")),
    ("read_file", {"path": "C:\\Windows\\win.ini"}, ("C:\\Windows\\win.ini", "absolute")),
    ("read_file", {"path": "c:/secret.txt"}, ("c:/secret.txt", "absolute")),
    ("read_file", {"path": "//server/share/x"}, ("//server/share/x", "absolute")),
    ("read_file", {"path": "\\\\server\\share\\x"}, ("\\\\server\\share\\x", "absolute")),
    ("write_file", {"path": "./~", "content": "x"}, ("'./~'", "absolute")),  # "~" once normalised
    ("read_file", {"path": "./~/.ssh/id_rsa"}, ("./~/.ssh/id_rsa", "absolute")),
    ("write_file", {"path": ".\\C:\\x.txt", "content": "x"}, ("C:\\x.txt", "absolute")),
    ("list_files", {"path": "/"}, ("'/'", "absolute")),
    ("search", {"pattern": "root", "path": "/etc"}, ("'/etc'", "absolute")),
    ("outline", {"path": "/etc/hosts"}, ("'/etc/hosts'", "absolute")),
    # symlinks (files and directories) pointing out
    ("read_file", {"path": "link.txt"}, ("'link.txt'", "outside the workspace", "symbolic link")),
    ("read_file", {"path": "escape/secret.txt"}, ("escape/secret.txt", "outside the workspace")),
    ("read_file", {"path": "escape/dir/deep.txt"}, ("escape/dir/deep.txt", "outside")),
    ("read_file", {"path": "up/outside/secret.txt"}, ("up/outside/secret.txt", "outside")),
    ("write_file", {"path": "escape/new.py", "content": "x"}, ("escape/new.py", "outside")),
    ("write_file", {"path": "link.txt", "content": "pwned"}, ("'link.txt'", "outside")),
    (
        "edit_file",
        {"path": "link.txt", "old_text": "TOP", "new_text": "NOT"},
        ("'link.txt'", "outside"),
    ),
    ("delete_file", {"path": "link.txt"}, ("'link.txt'", "outside")),
    ("delete_file", {"path": "escape/secret.txt"}, ("escape/secret.txt", "outside")),
    ("rename_file", {"path": "link.txt", "new_path": "mine.txt"}, ("'link.txt'", "outside")),
    ("rename_file", {"path": "escape/secret.txt", "new_path": "x.txt"}, ("escape/", "outside")),
    ("rename_file", {"path": "src/a.py", "new_path": "escape/a.py"}, ("escape/a.py", "outside")),
    ("list_files", {"path": "escape"}, ("'escape'", "outside")),
    ("list_files", {"path": "escape", "glob": "*"}, ("'escape'", "outside")),
    ("search", {"pattern": "TOP", "path": "escape"}, ("'escape'", "outside")),
    ("search", {"pattern": "TOP", "path": "link.txt"}, ("'link.txt'", "outside")),
    ("outline", {"path": "escape/secret.py"}, ("escape/secret.py", "outside")),
    # symlink loops
    ("read_file", {"path": "loop1"}, ("'loop1'", "loop")),
    ("read_file", {"path": "self"}, ("'self'", "loop")),
    ("write_file", {"path": "loop1/x.py", "content": "x"}, ("loop1/x.py", "loop")),
    ("delete_file", {"path": "loop2"}, ("'loop2'", "loop")),
    ("rename_file", {"path": "src/a.py", "new_path": "loop1"}, ("'loop1'", "loop")),
    ("list_files", {"path": "loop1"}, ("'loop1'", "loop")),
    ("outline", {"path": "self"}, ("'self'", "loop")),
    ("search", {"pattern": "x", "path": "loop2"}, ("'loop2'", "loop")),
    # device files and pipes
    ("read_file", {"path": "zero"}, ("'zero'", "outside")),
    ("read_file", {"path": "devdir/null"}, ("devdir/null", "outside")),
    ("write_file", {"path": "devdir/null", "content": "x"}, ("devdir/null", "outside")),
    ("read_file", {"path": "fifo"}, ("'fifo'", "not a regular file")),
    ("outline", {"path": "fifo"}, ("'fifo'", "not a regular file")),
    ("write_file", {"path": "fifo", "content": "x"}, ("'fifo'", "not a regular file")),
    ("edit_file", {"path": "fifo", "old_text": "a", "new_text": "b"}, ("'fifo'", "not a regular")),
    ("delete_file", {"path": "fifo"}, ("'fifo'", "not a regular file")),
    # .git, in every spelling a file system may treat as .git
    ("write_file", {"path": ".git/hooks/pre-commit", "content": "x"}, (".git/hooks", ".git")),
    ("write_file", {"path": ".git/config", "content": "x"}, ("'.git/config'", "never write")),
    (
        "edit_file",
        {"path": ".git/config", "old_text": "[core]", "new_text": "[x]"},
        ("'.git/config'", "never write"),
    ),
    ("delete_file", {"path": ".git/HEAD"}, ("'.git/HEAD'", "never write")),
    ("delete_file", {"path": ".git"}, ("'.git'", "never write")),
    ("rename_file", {"path": ".git/HEAD", "new_path": "HEAD.txt"}, ("'.git/HEAD'", ".git")),
    ("rename_file", {"path": "src/a.py", "new_path": ".git/hooks/post-checkout"}, (".git/",)),
    ("write_file", {"path": "./.git/hooks/pre-commit", "content": "x"}, ("./.git/", ".git")),
    ("write_file", {"path": ".git\\hooks\\pre-commit", "content": "x"}, (".git\\hooks", ".git")),
    ("write_file", {"path": ".GIT/hooks/pre-commit", "content": "x"}, (".GIT/hooks", ".git")),
    ("write_file", {"path": ".Git/config", "content": "x"}, ("'.Git/config'", ".git")),
    ("write_file", {"path": ".git./hooks/x", "content": "x"}, (".git./hooks/x", ".git")),
    ("write_file", {"path": ".git /hooks/x", "content": "x"}, (".git /hooks/x", ".git")),
    ("write_file", {"path": ".g\u200cit/hooks/x", "content": "x"}, ("hooks/x", ".git")),
    ("write_file", {"path": "\ufeff.git/hooks/x", "content": "x"}, ("hooks/x", ".git")),
    ("write_file", {"path": "GIT~1/hooks/x", "content": "x"}, ("GIT~1/hooks/x", ".git")),
    ("write_file", {"path": "gitlink/hooks/pre-commit", "content": "x"}, ("gitlink/", ".git")),
    ("write_file", {"path": "sub/.git/hooks/x", "content": "x"}, ("sub/.git/hooks/x", ".git")),
    ("edit_file", {"path": "sub/.git/config", "old_text": "[", "new_text": "("}, (".git",)),
    # the state dir
    ("write_file", {"path": ".glm-lsp/thinking.jsonl", "content": "{}"}, (".glm-lsp/", "state")),
    (
        "edit_file",
        {"path": ".glm-lsp/kv-cache.safetensors", "old_text": "not", "new_text": "now"},
        (".glm-lsp/kv-cache", "state directory"),
    ),
    ("delete_file", {"path": ".glm-lsp/kv-cache.safetensors"}, (".glm-lsp/", "state")),
    ("delete_file", {"path": ".glm-lsp/.gitignore"}, (".glm-lsp/.gitignore", "state")),
    ("rename_file", {"path": ".glm-lsp/thinking.jsonl", "new_path": "t.jsonl"}, ("state",)),
    ("rename_file", {"path": "src/a.py", "new_path": ".glm-lsp/a.py"}, (".glm-lsp/a.py", "state")),
    ("write_file", {"path": ".GLM-LSP/thinking.jsonl", "content": "x"}, (".GLM-LSP/", "state")),
    ("write_file", {"path": "statelink/x.txt", "content": "x"}, ("statelink/x.txt", "state")),
    ("write_file", {"path": ".glm-lsp", "content": "x"}, ("'.glm-lsp'", "state")),
    # renames out of and into the workspace
    ("rename_file", {"path": "src/a.py", "new_path": "../a.py"}, ("'../a.py'", "'..'")),
    ("rename_file", {"path": "src/a.py", "new_path": "/tmp/a.py"}, ("'/tmp/a.py'", "absolute")),
    ("rename_file", {"path": "../outside/secret.txt", "new_path": "s.txt"}, ("../outside",)),
    ("rename_file", {"path": "/etc/hostname", "new_path": "h.txt"}, ("/etc/hostname", "absol")),
    # hard links, directories, the root, bad values
    ("write_file", {"path": "hardlink.txt", "content": "x"}, ("'hardlink.txt'", "hard link")),
    ("edit_file", {"path": "hardlink.txt", "old_text": "shared", "new_text": "X"}, ("hard link",)),
    ("delete_file", {"path": "src"}, ("'src'", "not a regular file")),
    ("write_file", {"path": "src", "content": "x"}, ("'src'", "not a regular file")),
    ("write_file", {"path": ".", "content": "x"}, ("'.'", "root")),
    ("write_file", {"path": "", "content": "x"}, ("non-empty string",)),
    ("read_file", {"path": None}, ("non-empty string",)),
    ("read_file", {"path": 123}, ("non-empty string",)),
    ("read_file", {"path": ["src/a.py"]}, ("non-empty string",)),
    ("read_file", {"path": "src/a.py\x00../../etc/passwd"}, ("NUL byte",)),
    ("read_file", {"path": "src/a.py", "start_line": float("inf")}, ("read_file",)),
    ("read_file", {"path": "src/a.py", "start_line": "x"}, ("read_file",)),
    ("list_files", {"glob": 123}, ("glob must be a string",)),
    ("list_files", {"glob": ["*.py"]}, ("glob must be a string",)),
    ("search", {"pattern": "(", "regex": True}, ("invalid regular expression",)),
    ("search", {"pattern": {"$ne": 1}}, ("search",)),
    ("write_file", {"path": "x.py", "content": {"a": 1}}, ("content must be a string",)),
    ("read_file", {"path": "src/a.py", "mode": "w"}, ("bad arguments for read_file",)),
    ("format_disk", {"path": "/"}, ("there is no tool 'format_disk'",)),
]


@pytest.mark.parametrize(("tool", "args", "says"), REFUSED, ids=range(len(REFUSED)))
def test_hostile_call_is_refused_with_a_reason(
    world: World, tool: str, args: dict[str, Any], says: tuple[str, ...]
) -> None:
    result = world.call(tool, args)
    assert result.startswith("Error:"), result
    for part in says:
        assert part in result, (part, result)
    assert SECRET not in result
    assert not world.box.overlay.change_set()
    world.apply_and_check()


# Names that only look hostile: they are ordinary names inside the workspace.
STAYS_INSIDE: list[tuple[str, dict[str, Any]]] = [
    ("read_file", {"path": "%2e%2e/outside/secret.txt"}),
    ("read_file", {"path": "..%2foutside%2fsecret.txt"}),
    ("read_file", {"path": "%2e%2e%5csecret.txt"}),
    ("read_file", {"path": "\u2024\u2024/outside/secret.txt"}),  # one-dot leaders
    ("read_file", {"path": "\uff0e\uff0e/outside/secret.txt"}),  # fullwidth full stops
    ("read_file", {"path": "file:///etc/passwd"}),
    ("read_file", {"path": "..."}),
    ("write_file", {"path": "...", "content": "three dots\n"}),
    ("write_file", {"path": "..a/b..", "content": "dots\n"}),
    ("write_file", {"path": "src/a.py.", "content": "trailing dot\n"}),
    ("write_file", {"path": "\u2024\u2024/x.txt", "content": "leaders\n"}),
    ("write_file", {"path": "gi\u0074-notes/x.txt", "content": "git-ish\n"}),
    ("write_file", {"path": "inner/b.py", "content": "B = 1\n"}),  # a symlink inside: src/b.py
    ("rename_file", {"path": "inner/a.py", "new_path": "src/c.py"}),
    ("list_files", {"glob": "../*"}),
    ("list_files", {"glob": "/etc/*"}),
    ("list_files", {"glob": "**/../../**"}),
    ("list_files", {"glob": "../outside/**"}),
    ("list_files", {"glob": "escape/**"}),
    ("list_files", {"path": "inner", "glob": "../**"}),
    ("search", {"pattern": "TOP"}),  # the secret is outside: no hits
    ("search", {"pattern": "TOP.*", "regex": True}),
]


@pytest.mark.parametrize(("tool", "args"), STAYS_INSIDE, ids=range(len(STAYS_INSIDE)))
def test_lookalike_names_stay_inside(world: World, tool: str, args: dict[str, Any]) -> None:
    result = world.call(tool, args)
    assert SECRET not in result, result
    if tool in ("list_files", "search") and not result.startswith(("no ", "Error:")):
        for line in result.splitlines():  # every listed path is a workspace file
            rel = line.split(":", 1)[0]
            assert (world.ws / rel).resolve().is_relative_to(world.ws), line
            assert not rel.startswith((".git/", ".glm-lsp/", "escape", "link.txt")), line
    changes = world.box.overlay.change_set().changes
    allowed = {p for c in changes for p in (c.path, c.old_path) if p}
    for path in allowed:
        target = (world.ws / path).resolve()
        assert target.is_relative_to(world.ws.resolve()) and ".git" not in target.parts
    world.apply_and_check(allowed)


def test_huge_reads_are_bounded(world: World) -> None:
    ws = world.ws
    with open(ws / "sparse.bin", "wb") as f:  # 64 MB without using the disk
        f.truncate(64_000_000)
    (ws / "lines.txt").write_text("".join(f"line {i}\n" for i in range(300_000)))
    (ws / "one_line.txt").write_text("y" * 500_000)
    (ws / "many").mkdir()
    for i in range(1_100):
        (ws / "many" / f"f{i}.txt").write_text("match\n")
    world.box = world.new_box()
    world.before = snapshot(world.tmp)

    assert "too large" in world.call("read_file", {"path": "sparse.bin"})
    assert "[truncated:" in world.call("read_file", {"path": "lines.txt"})
    big = world.call("read_file", {"path": "lines.txt", "start_line": 1, "end_line": 10**12})
    assert "[truncated:" in big
    assert world.call("read_file", {"path": "lines.txt", "start_line": -5, "end_line": 2}) == (
        "[lines 1-2 of 300000 in lines.txt]\nline 0\nline 1\n"
    )
    one = world.call("read_file", {"path": "one_line.txt"})  # shows the start, not nothing
    assert one.count("y") == MAX_CHARS and "rest of this line" in one
    listed = world.call("list_files", {"path": "many"})
    assert "[truncated: 1100 files" in listed
    hits = world.call("search", {"pattern": "match"})
    assert len(hits.splitlines()) <= 200
    assert "line 299999" in world.call("search", {"pattern": "line 299999"})
    world.apply_and_check()


@pytest.mark.skipif(not hasattr(os, "mknod"), reason="no mknod")
def test_device_node_and_socket_inside_the_workspace(world: World, tmp_path: Path) -> None:
    try:
        os.mknod(world.ws / "chardev", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero
    except PermissionError:
        pytest.skip("creating a device node needs root")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(world.ws / "sock"))
        world.box = world.new_box()
        world.before = snapshot(world.tmp)
        for tool, args in [
            ("read_file", {"path": "chardev"}),
            ("write_file", {"path": "chardev", "content": "x"}),
            ("outline", {"path": "chardev"}),
            ("read_file", {"path": "sock"}),
            ("delete_file", {"path": "sock"}),
        ]:
            result = world.call(tool, args)
            assert result.startswith("Error:") and "not a regular file" in result, result
        assert "chardev" not in world.call("search", {"pattern": "x"})
        world.apply_and_check()
    finally:
        sock.close()


def test_a_symlink_made_after_the_agent_looked_is_not_written_through(world: World) -> None:
    """--apply checks every path again: a directory swapped for a symlink out writes nothing."""
    assert world.call("write_file", {"path": "gen/out.py", "content": "X = 1\n"}).startswith(
        "created"
    )
    assert world.call("edit_file", {"path": "notes.txt", "old_text": "notes", "new_text": "n"})
    os.symlink(world.outside / "dir", world.ws / "gen")  # the race: gen/ now points out
    with pytest.raises(ToolError, match=r"gen/out\.py.*outside the workspace"):
        apply_to_disk(world.ws, world.box.overlay.change_set(), world.ws / ".glm-lsp")
    assert not (world.outside / "dir" / "out.py").exists()
    assert (world.ws / "notes.txt").read_text() == "notes\n"  # all or nothing


def test_mixed_request_applies_only_the_legitimate_edits(world: World) -> None:
    for tool, args, _says in REFUSED[::3]:
        world.call(tool, args)
    world.call("edit_file", {"path": "src/a.py", "old_text": "return 1", "new_text": "return 2"})
    world.call("write_file", {"path": "docs/new.md", "content": "# new\n"})
    world.apply_and_check({"src/a.py", "docs/new.md"})
    assert (world.ws / "src" / "a.py").read_text() == A_PY.replace("1", "2")


# -- the glob of list_files agrees with the index ------------------------------------------------

GLOBS = ["*.py", "src/*.py", "**/*.py", "src/**/*.py", "*.{py,md}", "**/test_?.py", "[ab].py", "*"]
FILES = ["a.py", "b.md", "src/a.py", "src/deep/x.py", "src/deep/test_1.py", "lib/src/y.py"]


@pytest.mark.parametrize("glob", GLOBS)
def test_pending_files_list_like_indexed_files(tmp_path: Path, glob: str) -> None:
    """The same files, once on disk and once only in the overlay, list the same for a glob
    (PurePosixPath.match said yes to lib/src/y.py for src/*.py, the index said no)."""
    on_disk = tmp_path / "disk"
    for rel in FILES:
        (on_disk / rel).parent.mkdir(parents=True, exist_ok=True)
        (on_disk / rel).write_text("x\n")
    pending = tmp_path / "pending"
    pending.mkdir()
    boxes = []
    for root in (on_disk, pending):
        workspace = Workspace(root, root / ".glm-lsp")
        index = WorkspaceIndex(root)
        index.scan()
        boxes.append(ToolBox(workspace, index, Overlay(workspace)))
    for rel in FILES:
        boxes[1].run("write_file", {"path": rel, "content": "x\n"})
    for path in (None, "src"):
        args = {"glob": glob} | ({"path": path} if path else {})
        disk, overlay = (box.run("list_files", args) for box in boxes)
        assert disk == overlay, (glob, path)
    expected = sorted(f for f in FILES if compile_glob(glob)(f))
    assert boxes[1].run("list_files", {"glob": glob}).splitlines() == (
        expected or ["no files match"]
    )


# -- random paths: whatever they spell, nothing leaves the workspace -----------------------------

PIECES = ["..", ".", "src", "a.py", "escape", "link.txt", "up", "loop1", ".git", ".GIT", "hooks"]
PIECES += [".glm-lsp", "statelink", "gitlink", "fifo", "zero", "devdir", "~", "C:", "%2e%2e", "x"]
SEPARATORS = ["/", "\\", "//", "/./"]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=6),
    st.lists(st.sampled_from(SEPARATORS), min_size=6, max_size=6),
    st.booleans(),
    st.sampled_from(["read_file", "write_file", "delete_file", "rename_file", "list_files"]),
)
def test_random_paths_never_escape(
    tmp_path_factory: pytest.TempPathFactory,
    pieces: list[str],
    seps: list[str],
    lead: bool,
    tool: str,
) -> None:
    seps = [*seps[: len(pieces) - 1], ""]
    path = ("/" if lead else "") + "".join(p + s for p, s in zip(pieces, seps, strict=True))
    world = World(tmp_path_factory.mktemp("random"))
    args: dict[str, Any] = {"path": path}
    if tool == "write_file":
        args["content"] = "x\n"
    if tool == "rename_file":
        args = {"path": "notes.txt", "new_path": path}
    result = world.call(tool, args)
    assert SECRET not in result
    touched = set()
    for change in world.box.overlay.change_set().changes:
        for rel in (change.path, change.old_path):
            if rel:
                touched.add(rel)
                target = (world.ws / rel).resolve()
                assert target.is_relative_to(world.ws.resolve()), (path, change)
                assert not any(p.casefold().rstrip(". ") == ".git" for p in Path(rel).parts)
                assert not target.is_relative_to((world.ws / ".glm-lsp").resolve())  # state dir
    world.apply_and_check(touched)


# -- through a real agent request: the request goes on ------------------------------------------

HOSTILE_IN_RUN = [
    ("read_file", {"path": "../outside/secret.txt"}),
    ("read_file", {"path": "link.txt"}),
    ("read_file", {"path": "loop1"}),
    ("read_file", {"path": "fifo"}),
    ("read_file", {"path": "zero"}),
    ("write_file", {"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\nrm -rf ~\n"}),
    ("write_file", {"path": ".GIT/hooks/post-checkout", "content": "#!/bin/sh\n"}),
    ("write_file", {"path": ".glm-lsp/thinking.jsonl", "content": "{}\n"}),
    ("write_file", {"path": "escape/planted.py", "content": "x\n"}),
    ("rename_file", {"path": "src/a.py", "new_path": "../stolen.py"}),
    ("delete_file", {"path": "hardlink.txt"}),
    ("list_files", {"path": "escape"}),
]


def test_hostile_calls_inside_a_real_run_and_the_request_goes_on(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    world = World(tmp_path)
    replies = [
        "Let me try everything.</think>"
        + "".join(tool_call_text(t, a) for t, a in HOSTILE_IN_RUN)
        + tool_call_text(
            "edit_file", {"path": "src/a.py", "old_text": "return 1", "new_text": "return 42"}
        ),
        "Only the legitimate edit went through.</think>Changed foo to return 42.",
    ]
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(replies))
    world.before = snapshot(tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "glm_lsp.cli",
            "run",
            str(world.ws),
            "break out",
            "--model",
            str(tiny_model_dir),
            "--scripted-replies",
            str(script),
            "--apply",
            "--no-persist-kv-cache",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "Changed foo to return 42." in proc.stdout
    assert proc.stdout.count("+++ b/") == 1 and "+++ b/src/a.py" in proc.stdout
    assert "edit: 1 file(s), applied" in proc.stderr
    after = snapshot(tmp_path)
    changed = {k for k in world.before.keys() | after.keys() if world.before.get(k) != after.get(k)}
    # The log of this request, written by glm-lsp; its undo record is in the user's state.
    # the edit, the log, and the lock that makes requests on the conversation take turns
    assert changed == {
        "ws/src/a.py",
        "ws/.glm-lsp/thinking.jsonl",
        "ws/.glm-lsp/conversation.lock",
    }, changed
    assert (workspace_state(world.ws) / "edits.json").is_file()
    (record,) = [json.loads(line) for line in (world.ws / ".glm-lsp/thinking.jsonl").open()]
    results = [m["content"] for m in record["messages"] if m["role"] == "tool"]
    assert len(results) == len(HOSTILE_IN_RUN) + 1
    assert all(r.startswith("Error:") for r in results[:-1]), results
    assert results[-1].startswith("edited 'src/a.py'")
    assert record["applied"] is True and SECRET not in json.dumps(record)


def test_server_refuses_an_edit_that_a_new_symlink_would_carry_outside(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """The race through the server: gen/ becomes a symlink out after write_file ran and before
    the edit goes to the editor, which would follow it. No applyEdit is sent at all."""
    world = World(tmp_path)
    replies = [
        "Write both.</think>"
        + tool_call_text("write_file", {"path": "gen/out.py", "content": "X = 1\n"})
        + tool_call_text(
            "edit_file", {"path": "src/a.py", "old_text": "return 1", "new_text": "return 2"}
        ),
        "Done.</think>" + "word " * 400,  # a few seconds in which the link appears
    ]
    client = start_server(tmp_path, tiny_model_dir, world.ws, replies)
    try:
        msg_id = client.request_async(
            "workspace/executeCommand",
            {
                "command": "glm.refactor",
                "arguments": [{"uri": (world.ws / "src" / "a.py").as_uri(), "instruction": "go"}],
            },
        )
        client.wait_for(lambda: "created 'gen/out.py'" in client.streamed("tool_result"))
        os.symlink(world.outside / "dir", world.ws / "gen")
        result = client.wait(msg_id, timeout=120)["result"]
        assert result["applied"] is False, result
        assert "gen/out.py" in result["failureReason"] and "outside" in result["failureReason"]
        assert client.edits == []
        assert not (world.outside / "dir" / "out.py").exists()
        assert (world.ws / "src" / "a.py").read_text() == A_PY
    finally:
        client.close()
