"""The shadow workspace: a private copy of the workspace where commands run.

It holds the indexed (not ignored) files, the text of open editor buffers that differ from disk
(the agent reads those first), and the request's pending edits, so tests see what the model saw
and the edit before the user accepts it; whatever the tests write (__pycache__, .pytest_cache,
build output) stays in the shadow. Large ignored directories a project needs to run (.venv,
node_modules, target) are shown, never copied.

One per session, kept up to date incrementally: only files whose source or copy changed since
the last refresh are copied again. Which ones: with a watcher on the index, the index's change
journal (sources) and inotify on the shadow (what commands wrote), so a refresh with nothing
changed stats nothing. Without a watcher (`glm-lsp run`), or when either cannot tell (journal
window passed, inotify queue overflow, not Linux), every file's stamps are compared, as one
request's few commands can afford.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import BinaryIO, Protocol

from glm_lsp import textfile
from glm_lsp.sandbox.safe_fs import Tree
from glm_lsp.sandbox.shadow_watch import WriteWatch
from glm_lsp.textfile import digest
from glm_lsp.workspace import WorkspaceIndex

EXPOSED = (".venv", "venv", "node_modules", "target")
FICLONE = 0x40049409  # linux/fs.h: share the source's blocks (btrfs, xfs) instead of copying
Stamp = tuple[int, int]  # (mtime_ns, size)
OpenBuffers = Callable[[], dict[str, str]]  # rel path -> text of each open editor buffer
# How long a refresh waits for the watcher's queued changes before checking every file instead.
SETTLE_S = 0.5


class _Entry(Protocol):
    content: str


class PendingEdits(Protocol):
    """What `sync` reads of the agent's overlay (agent/edits.Overlay): edited texts, removals."""

    files: Mapping[str, _Entry]

    def removed_paths(self) -> Iterable[str]: ...


def _stamp(path: str) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if stat.S_ISREG(st.st_mode) else None


def clone_file(fin: BinaryIO, dst_fd: int) -> None:
    """Reflink where the filesystem can, else an in-kernel copy, else a plain one, into the open
    (empty) dst_fd. Never a hard link: a command writing the copy would write the user's file."""
    mode = os.fstat(fin.fileno()).st_mode & 0o777
    with os.fdopen(dst_fd, "wb") as fout:
        try:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
        except OSError:
            try:
                while os.copy_file_range(fin.fileno(), fout.fileno(), 1 << 30):
                    pass
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                fout.seek(0)
                fout.truncate()
                fin.seek(0)
                shutil.copyfileobj(fin, fout, 1 << 20)
        os.fchmod(fout.fileno(), mode)  # the descriptor, never a path a link could redirect


class Shadow:
    def __init__(
        self,
        root: Path,
        index: WorkspaceIndex,
        parent: Path | None = None,
        buffers: OpenBuffers | None = None,
    ) -> None:
        self.root, self.index, self.buffers = root.resolve(), index, buffers
        self.dir = Path(tempfile.mkdtemp(prefix="glm-lsp-shadow-", dir=parent)).resolve()
        self.tree = Tree(str(self.dir))  # every write below goes through it: no link followed
        self.writes = WriteWatch(str(self.dir))
        self._cleanup = weakref.finalize(self, _discard, str(self.dir), self.writes)
        self.copied: dict[str, tuple[Stamp, Stamp]] = {}  # rel -> (source, copy) when copied
        self.pending: dict[str, str | None] = {}  # rel -> digest of the pending edit written
        self.buffered: dict[str, str | None] = {}  # rel -> digest of the open buffer written
        self.exposed: tuple[str, ...] = ()
        self.mode: str | None = None  # how exposed dirs are shown: "mount" or "link"
        self.bytes_copied = 0
        self.known: set[str] | None = None  # the index's files at the last refresh
        self.generation = 0  # the index journal's generation at the last refresh
        self._tops: set[str] = set()

    def close(self) -> None:
        self._cleanup()

    # -- the workspace's own files -------------------------------------------------------------
    def refresh(self) -> int:
        """Bring the copy in line with the workspace and open buffers (files changed on either
        side); returns the number of files written. Paths with a pending edit are left to
        `sync`."""
        wanted = set(self.index.files())
        count = self._show_buffers(wanted)
        generation = self.index.generation
        suspects = self._suspects(wanted)
        full = suspects is None
        for rel in wanted if suspects is None else suspects:
            if rel in self.pending or rel in self.buffered or rel not in wanted:
                continue
            had = self.copied.get(rel)
            if had is not None and had == (_stamp(str(self.root / rel)), self._copy_stamp(rel)):
                continue
            count += self._copy(rel)
        for rel in [r for r in self.copied if r not in wanted and r not in self.pending]:
            self._remove(rel)
        if full:  # watches were reset: watch every directory holding a copy again
            for parent in {rel.rpartition("/")[0] for rel in self.copied}:
                self.writes.watch(parent)
        if wanted != self.known:
            self._tops = self._top_level(wanted)
        self.known, self.generation = wanted, generation
        self.exposed = tuple(n for n in EXPOSED if (self.root / n).is_dir() and n not in self._tops)
        return count

    def _suspects(self, wanted: set[str]) -> set[str] | None:
        """Paths whose source or copy may have changed since the last refresh; None: unknown,
        check them all."""
        written = self.writes.drain()  # every time, so the kernel's queue never overflows
        settle = self.index.settle
        if (
            written is None
            or self.known is None
            or settle is None
            or not settle(SETTLE_S)
            or not self.index.journal_covers(self.generation)
        ):
            self.writes.reset()
            return None
        changed = {c.path for c in self.index.changes_since(self.generation)}
        # New ignore rules change which files are indexed without journal entries; a symlink's
        # content changes under its target's name.
        return changed | written | (wanted - self.known) | self.index.linked_files()

    @staticmethod
    def _top_level(files: set[str]) -> set[str]:
        return {f.split("/", 1)[0] for f in files}

    def _copy_stamp(self, rel: str) -> Stamp | None:
        st = self.tree.lstat(rel)
        return (st.st_mtime_ns, st.st_size) if st and stat.S_ISREG(st.st_mode) else None

    def _copy(self, rel: str) -> int:
        src = str(self.root / rel)
        try:
            with open(src, "rb") as fin:
                clone_file(fin, self.tree.open_write(rel))
        except OSError:  # vanished or unreadable since the index saw it: not in the shadow
            self.copied.pop(rel, None)
            self._remove_quietly(rel)
            return 0
        copy = self._copy_stamp(rel)
        self.bytes_copied += copy[1] if copy else 0
        self.copied[rel] = (_stamp(src), copy)  # type: ignore[assignment]
        self.writes.watch(rel.rpartition("/")[0])
        return 1

    def _remove(self, rel: str) -> None:
        self.copied.pop(rel, None)
        self._remove_quietly(rel)

    def _remove_quietly(self, rel: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.tree.remove(rel)

    # -- open editor buffers -------------------------------------------------------------------
    def _show_buffers(self, wanted: set[str]) -> int:
        """An open buffer that differs from disk is what the agent reads: write its text (native
        form, as the editor would save it); the disk's file again once it is saved or closed."""
        shown = self.buffers() if self.buffers is not None else {}
        count = 0
        for rel, text in shown.items():
            if rel in self.pending or rel not in wanted:
                continue
            want = digest(text)
            if self.buffered.get(rel) == want and self._intact(rel, want):
                continue
            if textfile.read_native(self.root / rel) == text:
                if self.buffered.pop(rel, None) is not None:
                    count += self._copy(rel)
                continue
            self._write(rel, text)
            self.copied.pop(rel, None)
            self.buffered[rel] = want
            count += 1
        for rel in [r for r in self.buffered if r not in shown or r in self.pending]:
            del self.buffered[rel]
            if rel in self.pending:
                continue  # sync owns it now, and hands it back through here
            if rel in wanted:
                count += self._copy(rel)
            else:
                self._remove(rel)
                count += 1
        return count

    def _write(self, rel: str, text: str) -> None:
        self.tree.write(rel, textfile.encode(text))

    # -- the request's pending edits -----------------------------------------------------------
    def sync(self, overlay: PendingEdits) -> int:
        """Write the overlay's pending edits; undo the ones a previous sync wrote that are no
        longer pending. Returns the number of files written or removed."""
        wanted: dict[str, str | None] = {
            rel: digest(entry.content) for rel, entry in overlay.files.items()
        }
        for rel in overlay.removed_paths():
            wanted[rel] = None
        count = 0
        for rel, want in wanted.items():
            if rel in self.pending and self.pending[rel] == want and self._intact(rel, want):
                continue
            if want is None:
                self._remove_quietly(rel)
            else:
                self._write(rel, overlay.files[rel].content)
            self.copied.pop(rel, None)
            self.pending[rel] = want
            count += 1
        back = [r for r in self.pending if r not in wanted]
        indexed = set(self.index.files()) if back else set()
        for rel in back:
            del self.pending[rel]  # back to the workspace's own file (or none)
            if (self.root / rel).is_file() and rel in indexed:
                count += self._copy(rel)
            else:
                self._remove(rel)
                count += 1
        if back:  # or to its open buffer, when that differs from disk
            self._show_buffers(indexed)
        return count

    def _intact(self, rel: str, want: str | None) -> bool:
        """A command may have rewritten a pending file in the shadow: the edit must win again."""
        if want is None:
            return self.tree.lstat(rel) is None
        try:
            return digest(textfile.decode(self.tree.read(rel)).text) == want
        except (OSError, ValueError):
            return False

    # -- ignored directories the project needs -------------------------------------------------
    def show_exposed(self, mode: str) -> None:
        """`mount`: empty dirs for bwrap to mount the real ones on; `link`: symlinks to them."""
        for name in self.exposed:
            place = self.tree.lstat(name)
            if mode == "link":
                target = str(self.root / name)
                if not (
                    place and stat.S_ISLNK(place.st_mode) and os.readlink(self.dir / name) == target
                ):
                    self._remove_quietly(name)
                    os.symlink(target, self.dir / name)
            elif place is None or not stat.S_ISDIR(place.st_mode):
                self._remove_quietly(name)
                os.mkdir(self.dir / name)
        self.mode = mode

    def clear(self) -> None:
        """Empty the shadow (a command filled it); the next refresh and sync copy it again."""
        with os.scandir(self.dir) as entries:
            names = [e.name for e in entries]
        for name in names:
            self._remove_quietly(name)
        self.copied.clear()
        self.pending.clear()
        self.buffered.clear()
        self.known = None
        self.writes.reset()

    def disk_usage(self) -> int:
        """Bytes allocated to the shadow's files (a reflinked copy shares its blocks)."""
        total = 0
        for base, _dirs, names in os.walk(self.dir):
            for name in names:
                try:
                    total += os.lstat(os.path.join(base, name)).st_blocks * 512
                except OSError:
                    continue
        return total


def _discard(directory: str, writes: WriteWatch) -> None:
    writes.close()
    shutil.rmtree(directory, True)
