"""Which of the shadow's files commands wrote, without stat-ing them all (Linux inotify).

Commands write the shadow (formatters, snapshot updates, a stray `rm`); its copies must match the
workspace again before the next command. inotify queues an event in the kernel before the
writing call returns, so once a command has exited, reading the queue without blocking gives
every path it touched. It watches inodes, so writes through bubblewrap's bind mount count too.
Anything it cannot account for (queue overflow, a watched directory moved or deleted, no
inotify) answers "unknown", and the caller checks every file.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys

from glm_lsp.sandbox.safe_fs import Tree

# linux/inotify.h
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ONLYDIR, IN_DONT_FOLLOW = 0x4000, 0x8000, 0x01000000, 0x02000000
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
MASK |= IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW
FOLLOW_MASK = MASK & ~IN_DONT_FOLLOW  # for /proc/self/fd/N, which must be followed
LOST = IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED
HEADER = struct.Struct("iIII")  # wd, mask, cookie, len


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1, libc.inotify_add_watch  # noqa: B018 - present in glibc and musl
    except (OSError, AttributeError):
        return None
    return libc


class WriteWatch:
    """Paths written below `top` since the last `drain`; None from drain means "unknown"."""

    def __init__(self, top: str) -> None:
        self.top = top
        self._tree = Tree(top)
        self._libc = _libc()
        self._fd = -1
        self._dirs: dict[int, str] = {}  # watch descriptor -> directory (relative, "" for top)
        self._watched: set[str] = set()
        self._lost = True  # nothing watched yet: the first drain is "unknown"
        self._open()

    def _open(self) -> None:
        if self._libc is None:
            return
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd >= 0:
            self._fd = fd

    def watch(self, rel_dir: str) -> None:
        """Watch a directory holding copies (and, to notice it vanish, its parents)."""
        while rel_dir not in self._watched and self._fd >= 0:
            # Reached without following a link (a command may have put one there), then
            # watched through its descriptor.
            dir_fd = self._tree.open_dir(rel_dir)
            if dir_fd is None:
                self._lost = True  # not a real directory now: the next drain says "unknown"
                return
            try:
                path = f"/proc/self/fd/{dir_fd}"
                wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), FOLLOW_MASK)  # type: ignore[union-attr]
            finally:
                os.close(dir_fd)
            if wd < 0:  # e.g. the watch limit (ENOSPC): from now on, always "unknown"
                self._libc = None
                self.close()
                return
            self._dirs[wd] = rel_dir
            self._watched.add(rel_dir)
            if not rel_dir:
                return
            rel_dir = rel_dir.rpartition("/")[0]

    def drain(self) -> set[str] | None:
        """Paths (relative to top) touched since the last drain, or None when that is unknown;
        after None the caller checks everything and re-adds its directories with `reset`."""
        if self._fd < 0:
            return None
        touched: set[str] = set()
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, size = HEADER.unpack_from(data, offset)
                name = data[offset + HEADER.size : offset + HEADER.size + size].rstrip(b"\0")
                offset += HEADER.size + size
                if mask & LOST:
                    self._lost = True
                    continue
                base = self._dirs.get(wd)
                if base is not None and name:
                    text = os.fsdecode(name)
                    touched.add(f"{base}/{text}" if base else text)
        if self._lost:
            return None
        return touched

    def reset(self) -> None:
        """Start over after "unknown": a fresh queue; the caller re-adds what it needs."""
        self._close_fd()
        self._dirs.clear()
        self._watched.clear()
        self._lost = False
        self._open()

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        self._close_fd()
        self._lost = True
