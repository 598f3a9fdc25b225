"""The index of one workspace folder: file list (ignore-aware), outlines, search, change journal.

Thread-safe: the watcher thread applies changes while the agent thread reads, so state is
guarded by one lock. File contents are never held; search reads files on demand.
"""

from __future__ import annotations

import bisect
import os
import stat
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from .ignore import (
    GIT_EXCLUDE,
    IgnoreRules,
    ancestors,
    clean_rel,
    compile_glob,
    is_ignore_file,
    is_under,
    link_ok,
    parent_dir,
    walk_tree,
)
from .outline import Symbol, innermost, language_for, parse_outline
from .search import (
    BINARY_PROBE,
    SEARCH_SECONDS,
    Deadline,
    SearchHits,
    SearchStopped,
    compile_matcher,
    format_hit,
    read_text_file,
)
from .watcher import Change, ChangeJournal

CHANGE_KINDS = ("created", "modified", "deleted", "moved")


class WorkspaceIndex:
    def __init__(
        self,
        root: Path,
        *,
        exclude_dirs: Iterable[str] = (".git", ".glm-lsp"),
        max_file_bytes: int = 2_000_000,
    ) -> None:
        self._alias = os.path.abspath(root)  # the unresolved spelling, as clients may send it
        self.root = Path(root).resolve()
        self._root = str(self.root)
        self.exclude_dirs = tuple(exclude_dirs)
        self.max_file_bytes = max_file_bytes
        self._lock = threading.RLock()
        self._rules = IgnoreRules(self.root, self.exclude_dirs)
        self._files: set[str] = set()
        self._links: set[str] = set()  # symlinked files: re-checked to still resolve inside
        self._dirs: Counter[str] = Counter()  # directory -> indexed files below it
        self._sorted: list[str] | None = None
        self._scanned = False
        self._journal = ChangeJournal()
        # Set by a running watcher: waits up to N s for queued changes to reach the journal, True
        # once they have. None: nothing watches the disk, so the journal may miss changes.
        self.settle: Callable[[float], bool] | None = None
        # Set by a running watcher, watching the disk or not: the same wait, for the changes
        # reported so far (the editor's didChangeWatchedFiles too) to reach the journal.
        self.drain: Callable[[float], bool] | None = None

    # ----- listing -------------------------------------------------------------------------

    def scan(self) -> None:
        """Full walk of the tree (no file contents are read); replaces the file list.

        Holds the lock throughout so no watcher update lands in a state about to be replaced.
        """
        with self._lock:
            rules = IgnoreRules(self.root, self.exclude_dirs)
            files, links = walk_tree(self._root, "", rules)
            self._rules, self._files, self._links = rules, files, links
            self._dirs = Counter(d for rel in files for d in ancestors(rel))
            self._sorted, self._scanned = None, True

    def files(self) -> list[str]:
        with self._lock:
            return list(self._ordered())

    def linked_files(self) -> set[str]:
        """Indexed files that are symlinks: they change with a target the journal names instead."""
        with self._lock:
            return self._links & self._files

    def list_files(self, path: str | None = None, glob: str | None = None) -> list[str]:
        """Files under `path` (a directory or one file), optionally filtered by `glob`, which is
        tried against the root-relative path and the path relative to `path`."""
        prefix = clean_rel(path)
        with self._lock:
            found = [prefix] if prefix in self._files else self._under(prefix)
        if glob:
            match, cut = compile_glob(glob), len(prefix) + 1 if prefix else 0
            found = [r for r in found if match(r) or (cut and match(r[cut:]))]
        return found

    def is_ignored(self, rel: str) -> bool:
        try:
            rel = clean_rel(rel)
        except ValueError:
            return True  # outside the workspace: never indexed
        is_dir = os.path.isdir(os.path.join(self._root, rel))
        with self._lock:
            return self._rules.is_ignored(rel, is_dir)

    def is_excluded(self, rel: str) -> bool:
        """Hard exclusions only (.git, the state dir): cheap, lock-free."""
        return self._rules.is_excluded(rel)

    def to_rel(self, path: str | os.PathLike[str]) -> str | None:
        """Absolute path -> workspace-relative posix path, or None when outside this root."""
        p = os.path.abspath(path)
        for base in (self._root, self._alias):
            if p == base:
                return ""
            if p.startswith(base.rstrip(os.sep) + os.sep):
                return p[len(base.rstrip(os.sep)) + 1 :].replace(os.sep, "/")
        return None

    # ----- contents ------------------------------------------------------------------------

    def search(
        self,
        pattern: str,
        path: str | None = None,
        regex: bool = False,
        *,
        max_results: int = 200,
        read_text: Callable[[str], str | None] | None = None,
        extra_files: Iterable[str] = (),
        time_limit: float = SEARCH_SECONDS,
    ) -> SearchHits:
        """Matching lines as "path:line: text", files in path order.

        `read_text(rel)`, when given, replaces reading the disk: it returns the caller's view
        (open buffer, pending edit, else disk) or None for a file that is gone; a file it raises
        for is skipped. `extra_files` adds paths that exist only in that view. Bounded by
        `max_results` hits and `time_limit` seconds; the result's `note` says which ended it.
        """
        deadline = Deadline(time_limit)
        matcher = compile_matcher(pattern, regex, deadline)
        prefix = clean_rel(path)
        candidates = set(self.list_files(prefix))
        for extra in extra_files:
            rel = clean_rel(extra)
            if is_under(rel, prefix) and not self.is_ignored(rel):
                candidates.add(rel)
        hits = SearchHits()
        try:
            for rel in sorted(candidates):
                deadline.check()
                text = self._read_disk(rel) if read_text is None else self._read_via(read_text, rel)
                if text is None:
                    continue
                for line_no, line in matcher(text):
                    hits.append(format_hit(rel, line_no, line))
                    if len(hits) >= max_results:
                        hits.note = (
                            f"[stopped at {max_results} matches; narrow the pattern or path]"
                        )
                        return hits
        except SearchStopped as stop:
            hits.note = str(stop)
        return hits

    def outline(self, rel: str, text: str | None = None) -> list[Symbol]:
        """Symbols of a file (of `text` when given, e.g. an open buffer); [] if unsupported."""
        rel = clean_rel(rel)
        if language_for(rel) is None:
            return []
        if text is None:
            text = self._read_disk(rel)
        elif len(text) > self.max_file_bytes or "\0" in text[:BINARY_PROBE]:
            return []
        return parse_outline(rel, text) if text is not None else []

    def enclosing_symbol(self, rel: str, text: str, line: int) -> Symbol | None:
        """Innermost function/class/method containing 1-based `line`, so an action on an empty
        or partial selection can act on the whole definition."""
        return innermost(self.outline(rel, text), line)

    # ----- changes -------------------------------------------------------------------------

    def apply_change(self, kind: str, rel: str, dest: str | None = None) -> None:
        """Bring `rel` (and `dest` for a move) in line with the disk; `kind` is the event seen.

        Reconciling with the disk, not trusting the event, keeps out-of-order or duplicate
        watcher events harmless.
        """
        if kind not in CHANGE_KINDS:
            raise ValueError(f"unknown change kind {kind!r}; expected one of {CHANGE_KINDS}")
        paths = [rel] if kind != "moved" or dest is None else [rel, dest]
        with self._lock:
            if not self._scanned:
                self.scan()
            for p in paths:
                try:
                    self._reconcile(clean_rel(p))
                except ValueError:
                    continue  # outside the workspace

    @property
    def generation(self) -> int:
        with self._lock:
            return self._journal.generation

    def journal_covers(self, generation: int) -> bool:
        with self._lock:
            return self._journal.covers(generation)

    def changes_since(self, generation: int) -> list[Change]:
        with self._lock:
            return self._journal.since(generation)

    # ----- internals -----------------------------------------------------------------------

    def _ordered(self) -> list[str]:
        if not self._scanned:
            self.scan()
        if self._sorted is None:
            self._sorted = sorted(self._files)
        return self._sorted

    def _under(self, prefix: str) -> list[str]:
        ordered = self._ordered()
        if not prefix:
            return list(ordered)
        # "/" sorts just before "0": everything in [prefix + "/", prefix + "0") is inside.
        lo = bisect.bisect_left(ordered, prefix + "/")
        return ordered[lo : bisect.bisect_left(ordered, prefix + "0", lo)]

    def _reconcile(self, rel: str) -> None:
        if rel and self._rules.is_excluded(rel) and rel != GIT_EXCLUDE:
            return
        if is_ignore_file(rel):
            d = "" if rel == GIT_EXCLUDE else parent_dir(rel)
            if self._rules.load_dir(d):
                self._sync_dir(d, journal=False)  # membership changed, not the files themselves
            if rel == GIT_EXCLUDE:
                return
        full = os.path.join(self._root, rel) if rel else self._root
        try:
            mode = os.lstat(full).st_mode
        except OSError:
            mode = 0
        if stat.S_ISDIR(mode):
            self._drop(rel)  # in case a file of that name was replaced by a directory
            self._sync_dir(rel, journal=True)
            return
        keep = stat.S_ISREG(mode) or (stat.S_ISLNK(mode) and link_ok(self._root, full, self._rules))
        if rel in self._dirs or self._rules.has_spec(rel):  # a directory that went away
            for r in self._under(rel):
                self._drop(r)
            self._rules.forget_subtree(rel)
        if keep and not self._rules.is_ignored(rel):
            if stat.S_ISLNK(mode):
                self._links.add(rel)
            self._add(rel)
        else:
            self._drop(rel)

    def _sync_dir(self, top: str, *, journal: bool) -> None:
        if top and self._rules.is_ignored(top, is_dir=True):
            found: set[str] = set()
            links: set[str] = set()
        else:
            found, links = walk_tree(self._root, top, self._rules)
        known = set(self._under(top))
        self._links |= links
        for rel in sorted(found - known):
            self._add(rel, journal=journal)
        for rel in sorted(known - found):
            self._drop(rel, journal=journal)

    def _add(self, rel: str, *, journal: bool = True) -> None:
        if rel in self._files:
            if journal:
                self._journal.record("modified", rel)
            return
        self._files.add(rel)
        self._dirs.update(ancestors(rel))
        self._sorted = None
        if journal:
            self._journal.record("created", rel)

    def _drop(self, rel: str, *, journal: bool = True) -> None:
        if rel not in self._files:
            return
        self._files.remove(rel)
        for d in ancestors(rel):
            if self._dirs[d] > 1:
                self._dirs[d] -= 1
            else:
                del self._dirs[d]
        self._links.discard(rel)
        self._sorted = None
        if journal:
            self._journal.record("deleted", rel)

    def _read_via(self, read_text: Callable[[str], str | None], rel: str) -> str | None:
        try:
            text = read_text(rel)
        except Exception:  # e.g. the tools' reader refuses binary or huge files by raising
            return None
        if text is None or len(text) > self.max_file_bytes or "\0" in text[:BINARY_PROBE]:
            return None
        return text

    def _read_disk(self, rel: str) -> str | None:
        """Text of a file, or None if unreadable, binary, huge, not a regular file, or reached
        through a symlink that now points outside the root."""
        full = os.path.join(self._root, rel)
        if rel in self._links or rel not in self._files:
            real = os.path.realpath(full)
            if not real.startswith(self._root + os.sep):
                return None
        return read_text_file(full, self.max_file_bytes)
