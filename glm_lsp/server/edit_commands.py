"""glm.undo and glm.retry: the last applied edit reverted, the last declined one sent again.

Both survive a restart (EditStore) and both check the files first: undo only reverts files that
still hold what the edit produced; retry merges the edit onto what the files hold now.
"""

from __future__ import annotations

from typing import Any

from glm_lsp.agent.rebase import rebase
from glm_lsp.agent.undo import current_text, inverse, undo_problems
from glm_lsp.core.requests import arguments, folder_of
from glm_lsp.core.results import edit_changes
from glm_lsp.server.app import GlmServer
from glm_lsp.wire.commands import EditReply


def _refused(reason: str) -> EditReply:
    return EditReply(applied=False, changes=[], failure_reason=reason)


async def undo(ls: GlmServer, command: str, args: tuple[Any, ...]) -> EditReply:
    folder = folder_of(ls, command, arguments(command, args).uri)
    store = folder.edits
    done = store.applied
    if done is None:
        return _refused("nothing to undo")
    problems = undo_problems(folder.root, done.change_set, folder.open_doc)
    if problems:
        return _refused("not undone: " + "; ".join(problems))
    revert = inverse(done.change_set)
    report = await ls.send_edit(folder, revert, "GLM: Undo")
    if report.applied:
        store.set(applied=None, declined=store.declined)
    return EditReply(
        applied=report.applied,
        changes=edit_changes(folder, revert),
        failure_reason=None if report.applied else report.reason,
    )


async def retry(ls: GlmServer, command: str, args: tuple[Any, ...]) -> EditReply:
    folder = folder_of(ls, command, arguments(command, args).uri)
    store = folder.edits
    declined = store.declined
    if declined is None:
        return _refused("no declined edit to retry")
    rebased, problems = rebase(
        declined.change_set, lambda rel: current_text(folder.root, rel, folder.open_doc)
    )
    if problems:
        return _refused("not retried: " + "; ".join(problems) + "; run the request again")
    # The agent's edit again: reviewed like the first time
    report = await ls.send_edit(folder, rebased, declined.label, review=True)
    folder.remember(report, rebased, declined.label, declined.turn)
    return EditReply(
        applied=report.applied,
        changes=edit_changes(folder, rebased, report.landings),
        turn=declined.turn,
        failure_reason=None if report.applied else report.reason,
    )
