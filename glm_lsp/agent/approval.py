"""Per-edit approval (ACP's way): each file tool call's change is put to the user as the model
makes it, written once approved, and taken back out of the request's overlay when not, so the
tool call's result tells the model what happened before its next step.

The LSP front-end and `glm-lsp run` pass no approver: their edits stay pending until the one
change set at the end of the request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from glm_lsp.agent.edits import ChangeSet, FileChange, Overlay, Snapshot
from glm_lsp.agent.landing import ApplyReport, Landing
from glm_lsp.glm.tool_text import error, failed


@dataclass(frozen=True)
class Verdict:
    applied: bool  # approved and written
    note: str  # for the model: approved and written, or why not


# (this tool call's change to one file, the tool call's id, every approved edit of the request
# so far with this one) -> the verdict. The front-end asks, writes, and records the undo.
ApproveEdit = Callable[[FileChange, str, ChangeSet], Verdict]


@dataclass(frozen=True)
class Review:
    path: str
    kind: str
    applied: bool
    note: str


class EditGate:
    def __init__(self, overlay: Overlay, approve: ApproveEdit) -> None:
        self.overlay, self.approve = overlay, approve
        self.reviews: list[Review] = []

    def run(self, call: Callable[[], str], call_id: str) -> str:
        """Runs a file tool `call` on the overlay and puts the change it made to the user."""
        before = self.overlay.snapshot()
        result = call()
        if failed(result):
            return result
        step = change_since(self.overlay, before)
        if step is None:  # it wrote what was there: nothing to ask
            return result
        verdict = self.approve(step, call_id, self.overlay.change_set())
        self.reviews.append(Review(step.path, step.kind, verdict.applied, verdict.note))
        if verdict.applied:
            return f"{result}\n{verdict.note}"
        self.overlay.restore(before)
        return error(verdict.note)


def change_since(overlay: Overlay, snap: Snapshot) -> FileChange | None:
    """The one file change (a rename moves one file) between `snap` and the overlay now; None
    when the files hold what they held."""
    paths = sorted(set(snap.files) | snap.gone | set(overlay.files) | overlay.gone)
    moved = [(p, overlay.read_in(snap, p), overlay.read(p)) for p in paths]
    changed = [(p, old, new) for p, old, new in moved if old != new]
    if not changed:
        return None
    if len(changed) == 2:
        (a, a_old, a_new), (b, b_old, b_new) = changed
        if a_new is None and b_old is None:
            return overlay.file_change("rename", b, a, a_old, b_new)
        if b_new is None and a_old is None:
            return overlay.file_change("rename", a, b, b_old, a_new)
    if len(changed) != 1:
        raise ValueError(f"one tool call changed {len(changed)} files: {[p for p, *_ in changed]}")
    (path, old, new) = changed[0]
    kind = "create" if old is None else "delete" if new is None else "modify"
    return overlay.file_change(kind, path, None if old is None else path, old, new)


def reviewed_report(changes: ChangeSet, reviews: list[Review]) -> ApplyReport:
    """What the log and the reply say of a request whose edits were approved one by one:
    `changes` (the overlay's, only what was approved) landed; the files whose every change was
    turned down did not."""
    landings = [Landing(c.path, c.kind, True) for c in changes.changes]
    kept = {p for c in changes.changes for p in (c.path, c.old_path) if p}
    refused: dict[str, Review] = {}
    for review in reviews:
        if not review.applied and review.path not in kept:
            refused.setdefault(review.path, review)
    landings += [Landing(r.path, r.kind, False) for r in refused.values()]
    reason = "; ".join(r.note for r in refused.values()) or None
    return ApplyReport(bool(changes), reason, landings, changes, ChangeSet())
