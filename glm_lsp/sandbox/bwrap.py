"""The OS sandbox a command runs in: bubblewrap on Linux, sandbox-exec on macOS.

Writable inside: the shadow workspace and a private temp dir; everything else read-only; network
off unless allowed. `wrap` returns the argv prefix, or says why no sandbox is available.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

NO_SANDBOX = (
    "no sandbox is available ({why}); install bubblewrap (Debian/Ubuntu: apt-get install "
    'bubblewrap) or set glm.sandbox to "off" (flag --sandbox off) to run commands '
    "unsandboxed in the shadow workspace"
)


@dataclass(frozen=True)
class Jail:
    """Where a command runs: the shadow, where it shows up, and what else it may see."""

    shadow: Path  # the shadow workspace on disk
    root: Path  # the user's workspace: bwrap mounts the shadow over this path
    exposed: tuple[str, ...]  # ignored dirs of the root made visible read-only (.venv, ...)
    temp: Path  # private temp dir (sandbox-exec; bwrap uses a fresh tmpfs)
    allow_network: bool
    hidden: tuple[str, ...] = ()  # credentials and host sockets: covered by empty stand-ins
    keep: tuple[str, ...] = ()  # host paths under /tmp commands still see (the interpreter)
    tmp_bytes: int = 1 << 30  # the size of the private /tmp


class Unavailable(Exception):
    """No OS sandbox here; the message says how to get one or turn it off."""


@functools.lru_cache(maxsize=1)
def _bwrap_works(bwrap: str) -> str | None:
    """bwrap can be installed yet unusable (user namespaces disabled): try it once."""
    try:
        done = subprocess.run(
            [bwrap, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "true"],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip()[:200] or "bwrap failed"
    return None


@functools.lru_cache(maxsize=1)
def _sizes_tmpfs(bwrap: str) -> bool:
    """--size and --perms for a tmpfs came with bubblewrap 0.7; older ones get plain ones."""
    try:
        done = subprocess.run(
            [bwrap, "--ro-bind", "/", "/", "--size", "65536", "--perms", "0555", "--tmpfs",
             "/tmp", "true"],
            capture_output=True,
            timeout=20,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def bwrap_argv(jail: Jail, bwrap: str = "bwrap", sized: bool = True) -> list[str]:
    # The shadow is mounted at the workspace's own path, so absolute paths (editable installs,
    # venv shebangs, messages) mean the shadow's files; sources resolve in the original root.
    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    if sized:
        argv += ["--size", str(jail.tmp_bytes), "--perms", "1777"]
    argv += ["--tmpfs", "/tmp"]
    for path in jail.keep:  # e.g. the venv glm-lsp runs from, when it lives under /tmp
        argv += ["--ro-bind", path, path]
    # Hidden before the workspace is mounted, so a workspace below a hidden path still shows;
    # what lies inside the workspace (a workspace at $HOME) is hidden in the shadow after it.
    inside: list[tuple[str, Path]] = []
    others: list[tuple[str, Path]] = []
    for path in jail.hidden:
        if path == "/tmp" or path.startswith("/tmp/") or os.path.islink(path):
            continue  # the private /tmp hides it already; a link's target is in the list too
        rel = _below(path, str(jail.root))
        if rel is None:
            others.append((path, Path(path)))
        elif rel and os.path.lexists(jail.shadow / rel):
            inside.append((path, jail.shadow / rel))
    argv += _cover(others, sized)
    argv += ["--bind", str(jail.shadow), str(jail.root)]
    for name in jail.exposed:
        argv += ["--ro-bind", str(jail.root / name), str(jail.root / name)]
    argv += _cover(inside, sized)
    argv += [
        "--chdir", str(jail.root),
        "--setenv", "TMPDIR", "/tmp",
        "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--die-with-parent", "--new-session",
        "--cap-drop", "ALL",  # root outside is root inside, but with no capabilities
    ]  # fmt: skip
    if not jail.allow_network:
        argv.append("--unshare-net")
    return argv


def _below(path: str, top: str) -> str | None:
    """path relative to top ("" for top itself), or None when it is not inside."""
    if path == top:
        return ""
    return path[len(top) + 1 :] if path.startswith(top.rstrip("/") + "/") else None


def _cover(paths: list[tuple[str, Path]], sized: bool) -> list[str]:
    """Mounts that hide each path (as seen inside), by what is there (the path looked at)."""
    argv: list[str] = []
    for path, looked_at in paths:
        if looked_at.is_dir() and not looked_at.is_symlink():  # an empty dir, read-only if it can
            argv += ["--perms", "0555", "--tmpfs", path] if sized else ["--tmpfs", path]
        else:  # files and sockets: an empty file over them (nothing to read, none to connect)
            argv += ["--ro-bind", "/dev/null", path]
    return argv


def kept_under_tmp(root: Path, candidates: list[str]) -> tuple[str, ...]:
    """The candidates (interpreter prefixes, VIRTUAL_ENV) that lie under /tmp, outside the
    workspace: the private /tmp would hide them, and a project cloned there would not run."""
    kept: list[str] = []
    for raw in candidates:
        for path in {raw, os.path.realpath(raw)}:
            inside_root = path == str(root) or path.startswith(str(root) + "/")
            if path.startswith("/tmp/") and not inside_root and os.path.isdir(path):
                kept.append(path)
    return tuple(sorted(set(kept)))


def _sbpl(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def seatbelt_argv(jail: Jail) -> list[str]:
    """macOS: written to the same rules, but not tested (no macOS machine in CI)."""
    profile = [
        "(version 1)",
        "(allow default)",
        "(deny file-write*)",
        f"(allow file-write* (subpath {_sbpl(jail.shadow)}) (subpath {_sbpl(jail.temp)})",
        ' (literal "/dev/null") (literal "/dev/tty"))',
    ]
    for path in jail.hidden:
        if os.path.isdir(path):
            profile.append(f"(deny file-read* (subpath {_sbpl(Path(path))}))")
        else:  # a file, or an agent's socket
            profile.append(f"(deny file-read* network-outbound (literal {_sbpl(Path(path))}))")
    if not jail.allow_network:
        profile.append("(deny network*)")
    return ["sandbox-exec", "-p", "\n".join(profile)]


def wrap(jail: Jail) -> tuple[list[str], Path]:
    """The argv prefix that confines a `/bin/sh -c` and the cwd to start it in."""
    if sys.platform == "darwin":
        if shutil.which("sandbox-exec") is None:
            raise Unavailable(NO_SANDBOX.format(why="sandbox-exec not found"))
        return seatbelt_argv(jail), jail.shadow
    if not sys.platform.startswith("linux"):
        raise Unavailable(NO_SANDBOX.format(why=f"no sandbox support on {sys.platform}"))
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise Unavailable(NO_SANDBOX.format(why="bwrap not found"))
    problem = _bwrap_works(bwrap)
    if problem:
        raise Unavailable(NO_SANDBOX.format(why=f"bwrap does not run here: {problem}"))
    return bwrap_argv(jail, bwrap, _sizes_tmpfs(bwrap)), jail.shadow
