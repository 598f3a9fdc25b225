"""Which workspace paths are ignored: excluded dirs, `.gitignore`, `.ignore`, `.git/info/exclude`.

Paths are workspace-relative posix strings. Git semantics: a deeper ignore file overrides a
shallower one, `.ignore` overrides `.gitignore` in the same directory (ripgrep's rule), and a file
inside an ignored directory stays ignored whatever negations follow.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from pathspec import GitIgnoreSpec

# Read in this order so later files take precedence inside one directory.
IGNORE_FILES = (".gitignore", ".ignore")
GIT_EXCLUDE = ".git/info/exclude"


def parent_dir(rel: str) -> str:
    """'a/b/c.py' -> 'a/b'; 'c.py' -> ''."""
    return rel.rpartition("/")[0]


def is_ignore_file(rel: str) -> bool:
    return rel == GIT_EXCLUDE or rel.rpartition("/")[2] in IGNORE_FILES


def clean_rel(path: str | None) -> str:
    """Normalise a workspace-relative path; "" is the root. Raises ValueError if it escapes."""
    if path is None:
        return ""
    p = path.replace(os.sep, "/") if os.sep != "/" else path
    if p.startswith("/"):
        raise ValueError(f"path must be relative to the workspace: {path!r}")
    p = posixpath.normpath(p) if p else "."
    if p == ".." or p.startswith("../"):
        raise ValueError(f"path escapes the workspace: {path!r}")
    return "" if p == "." else p


def ancestors(rel: str) -> Iterable[str]:
    """'a/b/c.py' -> 'a', 'a/b'."""
    i = rel.find("/")
    while i >= 0:
        yield rel[:i]
        i = rel.find("/", i + 1)


def is_under(rel: str, prefix: str) -> bool:
    return not prefix or rel == prefix or rel.startswith(prefix + "/")


class IgnoreRules:
    """Ignore specs per directory, loaded as the tree is walked; not thread-safe (caller locks)."""

    def __init__(self, root: Path, exclude_dirs: Iterable[str]) -> None:
        self.root = root
        # Bare names match any path component; names with a slash are root-relative prefixes.
        cleaned = [d.strip("/") for d in exclude_dirs if d.strip("/")]
        self._exclude_names = frozenset(d for d in cleaned if "/" not in d)
        self._exclude_prefixes = tuple(d for d in cleaned if "/" in d)
        self._specs: dict[str, GitIgnoreSpec] = {}
        self._dir_cache: dict[str, bool] = {}

    def is_excluded(self, rel: str) -> bool:
        """Cheap check for the hard exclusions (.git, the state dir); no ignore files involved."""
        if any(part in self._exclude_names for part in rel.split("/")):
            return True
        return any(rel == p or rel.startswith(p + "/") for p in self._exclude_prefixes)

    def has_spec(self, dir_rel: str) -> bool:
        return dir_rel in self._specs

    def load_dir(self, dir_rel: str) -> bool:
        """(Re)read the ignore files of one directory; True if its rules changed."""
        names = list(IGNORE_FILES)
        if dir_rel == "":
            names.insert(0, GIT_EXCLUDE)  # lowest precedence, root-relative like a root .gitignore
        lines: list[str] = []
        base = self.root / dir_rel if dir_rel else self.root
        for name in names:
            try:
                lines += (base / name).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue  # missing or unreadable: no rules from it
        old = self._specs.get(dir_rel)
        spec = GitIgnoreSpec.from_lines(lines) if any(_is_rule(x) for x in lines) else None
        if spec is None:
            self._specs.pop(dir_rel, None)
        else:
            self._specs[dir_rel] = spec
        changed = (old is None) != (spec is None) or (old is not None and old != spec)
        if changed:
            self._dir_cache.clear()
        return changed

    def forget_subtree(self, dir_rel: str) -> None:
        """Drop the specs of a deleted directory and everything below it."""
        prefix = dir_rel + "/"
        for d in [d for d in self._specs if d == dir_rel or d.startswith(prefix) or dir_rel == ""]:
            del self._specs[d]
        self._dir_cache.clear()

    def matches(self, rel: str, is_dir: bool) -> bool:
        """Ignore decision for `rel` from its ancestors' specs, assuming no ancestor is ignored.

        This is the walk-time check: the walk prunes ignored directories, so ancestors are fine.
        """
        probe = rel + "/" if is_dir else rel
        d = parent_dir(rel)
        while True:
            spec = self._specs.get(d)
            if spec is not None:
                result = spec.check_file(probe[len(d) + 1 :] if d else probe)
                if result.include is not None:
                    return bool(result.include)
            if d == "":
                return False
            d = parent_dir(d)

    def is_ignored(self, rel: str, is_dir: bool = False) -> bool:
        """Full check for any path: hard exclusions, then every ancestor dir, then the path."""
        if not rel or rel == ".":
            return False
        if self.is_excluded(rel):
            return True
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if self._dir_ignored("/".join(parts[:i])):
                return True
        return self.matches(rel, is_dir)

    def _dir_ignored(self, dir_rel: str) -> bool:
        hit = self._dir_cache.get(dir_rel)
        if hit is None:
            hit = self._dir_cache[dir_rel] = self.matches(dir_rel, True)
        return hit


def _is_rule(line: str) -> bool:
    s = line.strip()
    return bool(s) and not s.startswith("#")


def compile_glob(glob: str) -> Callable[[str], bool]:
    """Glob -> predicate on a workspace-relative path.

    A glob without "/" matches the file name at any depth ("*.py"); otherwise it matches the
    whole path ("src/**/*.ts", where "**/" may match no directory). "{a,b}" alternatives work.
    """
    g = glob.strip().removeprefix("./")
    if not g:
        raise ValueError("empty glob")
    rx = re.compile(_glob_to_regex(g) + r"\Z", re.DOTALL)
    if "/" not in g:
        return lambda rel: rx.match(rel.rpartition("/")[2]) is not None
    return lambda rel: rx.match(rel) is not None


def _glob_to_regex(g: str) -> str:
    out: list[str] = []
    i, n, depth = 0, len(g), 0
    while i < n:
        c = g[i]
        if g.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if g.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = g.find("]", i + 2 if g.startswith("[!", i) or g.startswith("[^", i) else i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = g[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif c == "{":
            out.append("(?:")
            depth += 1
        elif c == "," and depth:
            out.append("|")
        elif c == "}" and depth:
            out.append(")")
            depth -= 1
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out) + ")" * depth


def walk_tree(root: str, top: str, rules: IgnoreRules) -> tuple[set[str], set[str]]:
    """(files, symlinked files) under directory `top` of `root`, pruning ignored directories and
    loading the ignore files met on the way. Reads no file contents."""
    files: set[str] = set()
    links: set[str] = set()
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(os.path.join(root, d) if d else root) as it:
                entries = list(it)
        except OSError:
            continue  # unreadable or vanished directory
        if d == "" or rules.has_spec(d) or any(e.name in IGNORE_FILES for e in entries):
            rules.load_dir(d)
        for e in entries:
            rel = f"{d}/{e.name}" if d else e.name
            try:
                if rules.is_excluded(rel):
                    continue
                if e.is_symlink():
                    # Directory links are not descended: inside the root their target is
                    # indexed under its own path; outside it must not be followed.
                    if link_ok(root, e.path, rules) and not rules.matches(rel, False):
                        files.add(rel)
                        links.add(rel)
                elif e.is_dir(follow_symlinks=False):
                    if not rules.matches(rel, True):
                        stack.append(rel)
                elif e.is_file(follow_symlinks=False) and not rules.matches(rel, False):
                    files.add(rel)
            except OSError:
                continue
    return files, links


def link_ok(root: str, path: str, rules: IgnoreRules) -> bool:
    """A symlink is indexed only if it ends at a regular file inside the root (loops, dangling
    links and links to directories are not)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # ELOOP / dangling raise here
            return False
    except OSError:
        return False
    real = os.path.realpath(path)
    if not real.startswith(root + os.sep):
        return False
    return not rules.is_excluded(real[len(root) + 1 :].replace(os.sep, "/"))
