"""`glm-lsp run --apply --review`: the user takes the edit file by file and hunk by hunk, as
with `git add -p`, and only the accepted part is written (in one transaction, by run.py).

Answers: y (take it), n (leave it), a (take it and the rest of this file), q (leave it and
everything after it).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from glm_lsp.agent.edits import ChangeSet, FileChange
from glm_lsp.agent.landing import Landing, hunks
from glm_lsp.textfile import digest

Ask = Callable[[str], str]  # prompt -> the user's answer (a line)
Show = Callable[[str], None]
CHOICES = "y,n,a,q"
HELP = "y - take this; n - leave it; a - take this and the rest of the file; q - leave the rest\n"


@dataclass
class Review:
    accepted: ChangeSet = field(default_factory=ChangeSet)
    landings: list[Landing] = field(default_factory=list)
    remainder: ChangeSet = field(default_factory=ChangeSet)  # what the user left, as proposed


class Reviewer:
    def __init__(self, ask: Ask, show: Show) -> None:
        self.ask, self.show = ask, show
        self.quit = False

    def choose(self, prompt: str) -> str:
        """y, n or a; after q every later question answers n."""
        if self.quit:
            return "n"
        while True:
            answer = self.ask(f"{prompt} [{CHOICES}]? ").strip().lower()[:1]
            if answer in ("y", "n", "a"):
                return answer
            if answer == "q":
                self.quit = True
                return "n"
            self.show(HELP)

    def file_op(self, c: FileChange) -> bool:
        what = {
            "create": f"Create {c.path}",
            "delete": f"Delete {c.path}",
            "rename": f"Rename {c.old_path} to {c.path}",
        }[c.kind]
        self.show(f"--- {c.kind} {c.path}\n")
        return self.choose(what) != "n"

    def text(self, c: FileChange, before: str) -> tuple[str, int, int]:
        """The file's text with the taken hunks, how many were taken, and how many there are."""
        parts = hunks(before, c.after or "")
        old = before.splitlines(keepends=True)
        out: list[str] = []
        line, taken, rest = 0, 0, False
        for n, (i1, i2, new) in enumerate(parts, 1):
            out += old[line:i1]
            if not rest:
                self.show(_hunk_text(c.path, old, i1, i2, new, n, len(parts)))
                answer = self.choose(f"Apply this hunk to {c.path}")
                rest = answer == "a"
            if rest or answer == "y":
                out += new
                taken += 1
            else:
                out += old[i1:i2]
            line = i2
        out += old[line:]
        return "".join(out), taken, len(parts)


def _hunk_text(path: str, old: list[str], i1: int, i2: int, new: list[str], n: int, of: int) -> str:
    lo, hi = max(i1 - 3, 0), min(i2 + 3, len(old))
    before = old[lo:hi]
    after = old[lo:i1] + new + old[i2:hi]
    lines = list(difflib.unified_diff(before, after, f"a/{path}", f"b/{path}", n=3))[2:]
    body = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return f"({n}/{of}) {path}\n{body}"


def review(change_set: ChangeSet, ask: Ask, show: Show) -> Review:
    """Ask about each change; what the user takes, what landed per change, and the rest."""
    reviewer = Reviewer(ask, show)
    out = Review()
    for c in change_set.changes:
        if c.kind != "modify" and not reviewer.file_op(c):
            out.landings.append(Landing(c.path, c.kind, False))
            out.remainder.changes.append(c)
            continue
        if c.kind == "delete" or c.after is None:
            out.landings.append(Landing(c.path, c.kind, True))
            out.accepted.changes.append(c)
            continue
        base = "" if c.kind == "create" else (c.before or "")
        text, taken, total = reviewer.text(c, base) if base != c.after else (c.after, 0, 0)
        landed = taken > 0 or c.kind != "modify"
        partial = (taken, total) if total > 0 and taken < total and landed else None
        out.landings.append(Landing(c.path, c.kind, landed, partial))
        if landed:
            out.accepted.changes.append(
                FileChange(
                    c.kind, c.path, c.old_path, c.before, text, c.version, c.base_hash, c.mode
                )
            )
        if not landed:
            out.remainder.changes.append(c)
        elif text != c.after:
            out.remainder.changes.append(
                FileChange("modify", c.path, c.path, text, c.after, None, digest(text))
            )
    return out
