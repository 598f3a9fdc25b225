"""Writes and removals of several files that happen all together or not at all (`run --apply`,
`glm-lsp undo`).

Everything is staged first (fsynced temp files beside their targets, missing folders made), every
file about to be replaced or removed gets a hard-linked backup, and only then are the renames
done; any failure puts the backups back and removes what was new.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from glm_lsp import textfile


class TransactionFailed(Exception):
    def __init__(self, path: Path, error: OSError, leftovers: list[str]) -> None:
        self.path, self.error, self.leftovers = path, error, leftovers
        super().__init__(f"{path}: {error.strerror or error}")


@dataclass
class _Done:
    temps: list[Path] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)  # folders this transaction made
    backups: dict[Path, Path] = field(default_factory=dict)  # original -> backup
    placed: list[Path] = field(default_factory=list)  # targets written or removed so far


@dataclass
class Transaction:
    writes: list[tuple[Path, bytes, int | None]] = field(default_factory=list)
    removals: list[Path] = field(default_factory=list)

    def write(self, path: Path, data: bytes, mode: int | None = None) -> None:
        """`mode` None: the existing file's mode, else the umask's."""
        self.writes.append((path, data, mode))

    def remove(self, path: Path) -> None:
        self.removals.append(path)

    def run(self) -> None:
        """Do it all, or raise TransactionFailed with the workspace as it was."""
        done = _Done()
        current = Path()
        try:
            for path, data, mode in self.writes:
                current = path
                done.dirs += _make_parents(path.parent)
                mode = _mode_of(path) if mode is None else mode
                done.temps.append(textfile.write_temp(path, data, mode))
            for path in [*self.removals, *(p for p, _, _ in self.writes)]:
                current = path
                if path not in done.backups and os.path.lexists(path):
                    done.backups[path] = _backup(path)
            # A rename or unlink that fails has changed nothing: only the ones done are undone.
            for path in self.removals:
                current = path
                os.unlink(path)
                done.placed.append(path)
            for tmp, (path, _, _) in zip(list(done.temps), self.writes, strict=True):
                current = path
                os.replace(tmp, path)
                done.placed.append(path)
                done.temps.remove(tmp)
        except OSError as exc:
            raise TransactionFailed(current, exc, _roll_back(done)) from exc
        except BaseException:
            _roll_back(done)
            raise
        for backup in done.backups.values():
            backup.unlink(missing_ok=True)


def _mode_of(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return textfile.default_mode()


def _make_parents(folder: Path) -> list[Path]:
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    made = []
    for d in reversed(missing):
        d.mkdir()
        made.append(d)
    return made


def _backup(path: Path) -> Path:
    """A second name for the file (a hard link: instant, and the original stays in place)."""
    backup = path.with_name(f".{path.name}.{secrets.token_hex(4)}.bak")
    try:
        os.link(path, backup, follow_symlinks=False)
    except OSError:  # a file system without hard links: a copy does too
        shutil.copy2(path, backup, follow_symlinks=False)
    return backup


def _roll_back(done: _Done) -> list[str]:
    """Undo what was done; the paths it could not restore (each is reported, none ignored)."""
    leftovers = []
    for path in reversed(done.placed):
        try:
            if path in done.backups:
                os.replace(done.backups.pop(path), path)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            leftovers.append(str(path))
    for backup in done.backups.values():  # backups of files never touched: just a second name
        backup.unlink(missing_ok=True)
    for tmp in done.temps:
        tmp.unlink(missing_ok=True)
    for folder in reversed(done.dirs):
        try:
            folder.rmdir()
        except OSError:
            leftovers.append(str(folder))
    return leftovers
