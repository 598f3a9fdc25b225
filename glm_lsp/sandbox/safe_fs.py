"""Paths inside a directory that commands may rewrite, walked without following any link.

A command in the sandbox can replace a directory of the shadow by a symlink to `$HOME`; a later
write, chmod or removal by path would then land outside. Every walk here opens one component at
a time from a directory descriptor with O_NOFOLLOW, and whatever is not a real directory where
one is needed is removed and made again, so nothing outside the top directory is ever touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Tree:
    """A directory (made by us, so its own path is trusted) and the paths below it."""

    def __init__(self, top: str) -> None:
        self.top = top

    @staticmethod
    def parts(rel: str) -> list[str]:
        parts = [p for p in rel.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValueError(f"not a plain relative path: {rel!r}")
        return parts

    @contextlib.contextmanager
    def parent(self, rel: str, create: bool = False) -> Iterator[tuple[int, str] | None]:
        """(descriptor of rel's directory, rel's last name), or None when that directory is
        not there as real directories. With `create`, makes it, replacing links and files."""
        *dirs, name = self.parts(rel)
        fd = os.open(self.top, DIR_FLAGS)
        try:
            for part in dirs:
                try:
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        yield None
                        return
                    os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except OSError as exc:  # ELOOP: a symlink; ENOTDIR: a file
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or not create:
                        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                            yield None
                            return
                        raise
                    os.unlink(part, dir_fd=fd)
                    os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
            yield fd, name
        finally:
            os.close(fd)

    def open_dir(self, rel: str) -> int | None:
        """A descriptor of rel as a real directory ("" is the top), or None when it is not one."""
        if not rel:
            return os.open(self.top, DIR_FLAGS)
        with self.parent(rel) as at:
            if at is None:
                return None
            try:
                return os.open(at[1], DIR_FLAGS, dir_fd=at[0])
            except OSError:
                return None

    def lstat(self, rel: str) -> os.stat_result | None:
        with self.parent(rel) as at:
            if at is None:
                return None
            try:
                return os.stat(at[1], dir_fd=at[0], follow_symlinks=False)
            except OSError:
                return None

    def read(self, rel: str) -> bytes:
        """The bytes of a regular file; OSError when it is missing, a link or not a file."""
        with self.parent(rel) as at:
            if at is None:
                raise FileNotFoundError(errno.ENOENT, "not in the tree", rel)
            fd = os.open(at[1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=at[0])
            with os.fdopen(fd, "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise IsADirectoryError(errno.EISDIR, "not a file", rel)
                return handle.read()

    def open_write(self, rel: str) -> int:
        """A fresh, empty regular file at rel (whatever was there removed): its descriptor."""
        with self.parent(rel, create=True) as at:
            assert at is not None
            fd, name = at
            remove_at(fd, name)
            return os.open(
                name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=fd,
            )

    def write(self, rel: str, data: bytes) -> None:
        with os.fdopen(self.open_write(rel), "wb") as handle:
            handle.write(data)

    def remove(self, rel: str) -> None:
        """Removes rel, file, link or whole directory, if it is there; never what a link names."""
        with self.parent(rel) as at:
            if at is not None:
                remove_at(*at)


def remove_at(dir_fd: int, name: str) -> None:
    """Unlink `name` in dir_fd, or remove it as a directory tree, descriptor by descriptor."""
    try:
        os.unlink(name, dir_fd=dir_fd)
        return
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.EISDIR, errno.EPERM):
            raise
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    try:
        with os.scandir(fd) as entries:
            names = [e.name for e in entries]
        for child in names:
            remove_at(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
