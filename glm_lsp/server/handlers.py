"""LSP features: lifecycle, settings, code actions, watched files, and command registration."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from lsprotocol.converters import get_converter
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import to_fs_path

from glm_lsp.agent.instruction_comments import instruction_comments
from glm_lsp.core.requests import (
    KINDS,
    BadArguments,
    Span,
    accepted_document,
    selection_lines,
    widen,
)
from glm_lsp.server import commands, edit_commands
from glm_lsp.server.app import GlmServer
from glm_lsp.wire.converter import converter

log = logging.getLogger(__name__)
# Not under `source`: VS Code leaves source actions out of the light bulb and the Ctrl+. menu,
# so "GLM: Explain" was only reachable from the palette there (found by the VS Code e2e test).
EXPLAIN_KIND = "glm.explain"
LSP_CONVERTER = get_converter()  # lsprotocol's public converter, for LSP types in arguments
ACTION_KINDS = [lsp.CodeActionKind.QuickFix, lsp.CodeActionKind.RefactorRewrite, EXPLAIN_KIND]


def register(server: GlmServer) -> None:
    @server.feature(lsp.INITIALIZE)
    def initialize(ls: GlmServer, params: lsp.InitializeParams) -> None:
        error = ls.update_settings(params.initialization_options)
        if error:
            ls.pending_messages.append(error)

    @server.feature(lsp.INITIALIZED)
    def initialized(ls: GlmServer, params: lsp.InitializedParams) -> None:
        for message in ls.pending_messages:
            ls.show_error(message)
        ls.pending_messages.clear()
        if _can_register_watchers(ls):
            ls.watch_registration = asyncio.ensure_future(_register_watchers(ls))

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: GlmServer, params: lsp.DidChangeConfigurationParams) -> None:
        error = ls.update_settings(params.settings, from_workspace=True)
        if error:
            ls.show_error(error)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(ls: GlmServer, params: lsp.DidChangeWatchedFilesParams) -> None:
        for event in params.changes:
            path = to_fs_path(event.uri)
            found = ls.folder_for_path(Path(path)) if path else None
            if found and found[0].watcher is not None:
                found[0].watcher.notify([(str(path), int(event.type))])

    @server.feature(lsp.WINDOW_WORK_DONE_PROGRESS_CANCEL)
    def progress_cancel(ls: GlmServer, params: lsp.WorkDoneProgressCancelParams) -> None:
        ls.cancel_token(params.token)

    @server.feature(lsp.SHUTDOWN)
    def shutdown(ls: GlmServer, *args: Any) -> None:
        ls.stop()

    @server.feature(
        lsp.TEXT_DOCUMENT_CODE_ACTION, lsp.CodeActionOptions(code_action_kinds=ACTION_KINDS)
    )
    def code_action(ls: GlmServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        return code_actions(ls, params)

    handlers = {name: commands.run_agent for name in KINDS}
    handlers |= {
        "glm.cancel": commands.cancel,
        "glm.status": commands.status,
        "glm.thinking.show": commands.thinking_show,
        "glm.thinking.reset": commands.thinking_reset,
        "glm.undo": edit_commands.undo,
        "glm.retry": edit_commands.retry,
    }
    for name, fn in handlers.items():
        server.command(name)(_command(name, fn))


def _can_register_watchers(ls: GlmServer) -> bool:
    caps = ls.client_capabilities
    watched = caps and caps.workspace and caps.workspace.did_change_watched_files
    return bool(watched and watched.dynamic_registration)


async def _register_watchers(ls: GlmServer) -> None:
    """Ask the client for file events too: it sees saves our watcher may coalesce or miss
    (network drives, editors writing through temp files); both feed the same debounced index."""
    options = lsp.DidChangeWatchedFilesRegistrationOptions(
        watchers=[lsp.FileSystemWatcher(glob_pattern="**/*")]
    )
    registration = lsp.Registration(
        id=str(uuid.uuid4()),
        method=lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES,
        register_options=options,
    )
    try:
        await ls.client_register_capability_async(lsp.RegistrationParams([registration]))
    except Exception as exc:  # the client may refuse; our own watcher still runs
        log.info("client refused didChangeWatchedFiles registration: %s", exc)


def _command(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """The core's BadArguments as InvalidParams; the typed result as JSON (the one converter)."""

    async def handler(ls: GlmServer, *args: Any) -> Any:  # pygls passes raw JSON values
        try:
            result = await fn(ls, name, args)
        except BadArguments as exc:
            raise JsonRpcInvalidParams(str(exc)) from None
        return converter.unstructure(result)

    return handler


def _wanted(kind: str, only: list[str] | None) -> bool:
    return not only or any(kind == o or kind.startswith(o + ".") for o in only)


def code_actions(ls: GlmServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
    uri = params.text_document.uri
    found = accepted_document(ls, uri)
    if found is None:  # untitled:, a notebook cell, another host, outside the folders
        return []
    folder, rel = found
    r = params.range
    span: Span | None = Span((r.start.line, r.start.character), (r.end.line, r.end.character))
    text = folder.read(rel)
    if text is not None:
        span, _symbol = widen(folder, rel, text, span)
    assert span is not None
    arg: dict[str, Any] = {"uri": uri, "range": _range(span)}
    only = [str(k) for k in params.context.only] if params.context.only else None
    actions = []
    if _wanted(EXPLAIN_KIND, only):
        actions.append(_action("GLM: Explain", EXPLAIN_KIND, "glm.explain", arg))
    if _wanted(lsp.CodeActionKind.RefactorRewrite, only):
        # Only our plugins ask for its instruction; anywhere else it could only fail.
        if ls.streams():
            actions.append(
                _action("GLM: Refactor…", lsp.CodeActionKind.RefactorRewrite, "glm.refactor", arg)
            )
        actions += _whole_refactors(ls, text, span, arg)
    diagnostics = params.context.diagnostics
    if diagnostics and _wanted(lsp.CodeActionKind.QuickFix, only):
        fix_arg = arg | {"diagnostics": [LSP_CONVERTER.unstructure(d) for d in diagnostics]}
        action = _action("GLM: Fix", lsp.CodeActionKind.QuickFix, "glm.fix", fix_arg)
        action.diagnostics = list(diagnostics)
        actions.append(action)
    return actions


def _whole_refactors(
    ls: GlmServer, text: str | None, span: Span, arg: dict[str, Any]
) -> list[lsp.CodeAction]:
    """Refactors with their instruction filled in, which any client runs from its menu: each
    `GLM:` comment in or above the selection, then the codeActions setting's for a selection."""
    instructions = []
    if text is not None:
        for comment in instruction_comments(text, *selection_lines(span)):
            if comment.instruction not in instructions:
                instructions.append(comment.instruction)
    titled = [(f"GLM: {_clip(i)}", i) for i in instructions]
    if not span.empty:  # a selection, or the definition around the cursor
        titled += [(f"GLM: {a.label}", a.instruction) for a in ls.settings.codeActions]
    kind = lsp.CodeActionKind.RefactorRewrite
    return [_action(t, kind, "glm.refactor", arg | {"instruction": i}) for t, i in titled]


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _action(title: str, kind: str, command: str, arg: dict[str, Any]) -> lsp.CodeAction:
    return lsp.CodeAction(
        title=title, kind=kind, command=lsp.Command(title=title, command=command, arguments=[arg])
    )


def _range(span: Span) -> dict[str, Any]:
    (l1, c1), (l2, c2) = span.start, span.end
    return {"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}}
