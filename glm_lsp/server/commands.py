"""The glm.* commands of design section 4: agent requests on the worker, the rest on the loop."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path, PurePosixPath
from typing import Any

from pygls.exceptions import JsonRpcRequestCancelled, JsonRpcServerError
from pygls.uris import to_fs_path

from glm_lsp.agent.edits import ChangeSet
from glm_lsp.agent.session import Outcome
from glm_lsp.memory.thinking_log import ThinkingLog
from glm_lsp.runtime.base import BackendError, Cancelled
from glm_lsp.server.app import Folder, GlmServer
from glm_lsp.server.jobs import Job, Progress, StreamRelay
from glm_lsp.server.requests import bad, build_request, clip, limit_field, one_object, resolve_uri

BACKEND_ERROR = -32001
TITLES = {
    "explain": "GLM: Explain",
    "refactor": "GLM: Refactor",
    "fix": "GLM: Fix",
    "ask": "GLM: Ask",
}


# -- argument checks ------------------------------------------------------------------------------
# Run before requests.py builds anything, so malformed input of any shape gets an InvalidParams
# error naming the field, never an internal error with a traceback, and never an echo of a
# megabyte of junk: every value quoted in a message is clipped.
MAX_TEXT = 100_000  # question / instruction characters (~25k tokens)
MAX_URI = 4_096
MAX_POSITION = 2**31 - 1  # LSP uinteger
TEXT_FIELDS = ("uri", "question", "instruction", "thinking")


def _kind(value: Any) -> str:
    kinds = {dict: "an object", list: "an array", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number" if isinstance(value, (int, float)) else "a value")


def check_arguments(ls: GlmServer, command: str, args: tuple[Any, ...]) -> None:
    if len(args) != 1 or not isinstance(args[0], dict):
        return  # one_object() says what is wrong with the shape
    obj = args[0]
    for name in TEXT_FIELDS:
        value = obj.get(name)
        if value is None or (name == "thinking" and isinstance(value, bool)):
            continue
        if not isinstance(value, str):
            raise bad(command, f"'{name}' must be a string, not {_kind(value)} ({clip(value)})")
        if len(value) > (MAX_URI if name == "uri" else MAX_TEXT):
            raise bad(command, f"'{name}' is {len(value)} characters long, more than accepted")
        check_encodable(command, name, value)
        if name == "thinking" and value not in ("auto", "enabled", "disabled"):
            raise bad(
                command, f"'thinking' is {clip(value)}; accepted values: auto, enabled, disabled"
            )
    limit = obj.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise bad(command, f"'limit' is {clip(limit)}; give a whole number >= 1")
    if obj.get("uri") is not None:
        check_uri(ls, command, obj["uri"])
    if obj.get("range") is not None:
        check_range(command, "range", obj["range"])
    if obj.get("diagnostics") is not None:
        check_diagnostics(command, obj["diagnostics"])


def check_encodable(command: str, name: str, value: str) -> None:
    """JSON can carry lone UTF-16 surrogates; the tokenizer and the log cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise bad(command, f"'{name}' has an unpaired surrogate at index {exc.start}") from None


def check_uri(ls: GlmServer, command: str, uri: str) -> None:
    """A file: URI of a path inside a workspace folder, also after following symlinks: the file
    goes into the prompt, so a link to /etc/passwd must not smuggle it there."""
    if not uri.startswith("file:"):
        return  # requests.resolve_uri names the scheme problem
    try:
        path = to_fs_path(uri)
    except ValueError as exc:
        raise bad(command, f"'uri' {clip(uri)} is not a valid URI: {exc}") from None
    if not path or "\x00" in path:
        raise bad(command, f"'uri' {clip(uri)} does not name a file path")
    if ".." in PurePosixPath(path).parts:
        raise bad(command, f"'uri' {clip(uri)} contains '..'; send the normalised path")
    try:
        real = Path(os.path.realpath(path))
    except (OSError, ValueError) as exc:
        raise bad(command, f"'uri' {clip(uri)} cannot be resolved: {exc}") from None
    if ls.folder_for_path(Path(path)) is not None and ls.folder_for_path(real) is None:
        raise bad(
            command, f"'uri' {clip(uri)} leads outside the workspace folders (a symbolic link)"
        )
    if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in real.parts):
        raise bad(command, f"'uri' {clip(uri)} has a file name longer than 255 bytes")


def check_range(command: str, name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise bad(command, f"'{name}' must be an object {{start, end}}, not {_kind(value)}")
    for end in ("start", "end"):
        position = value.get(end)
        if not isinstance(position, dict):
            raise bad(command, f"'{name}.{end}' must be an object {{line, character}}")
        for key in ("line", "character"):
            n = position.get(key)
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_POSITION:
                raise bad(
                    command,
                    f"'{name}.{end}.{key}' is {clip(n)}; give a whole number from 0 to "
                    f"{MAX_POSITION}",
                )


def check_diagnostics(command: str, value: Any) -> None:
    if not isinstance(value, list):
        raise bad(command, f"'diagnostics' must be an array, not {_kind(value)}")
    for i, item in enumerate(value):
        if isinstance(item, str):
            check_encodable(command, f"diagnostics[{i}]", item)
            continue
        if not isinstance(item, dict) or not isinstance(item.get("message"), str):
            raise bad(command, f"'diagnostics[{i}]' must be a string or an object with a message")
        check_encodable(command, f"diagnostics[{i}].message", item["message"])
        if item.get("range") is not None:
            check_range(command, f"diagnostics[{i}].range", item["range"])
        source = item.get("source")
        if source is not None and not isinstance(source, str):
            raise bad(command, f"'diagnostics[{i}].source' must be a string")
        if source is not None:
            check_encodable(command, f"diagnostics[{i}].source", source)


def changes_of(folder: Folder, change_set: ChangeSet) -> list[dict[str, str]]:
    return [{"uri": folder.uri(c.path), "kind": c.kind} for c in change_set.changes]


async def run_agent(ls: GlmServer, kind: str, args: tuple[Any, ...]) -> dict[str, Any]:
    command = f"glm.{kind}"
    check_arguments(ls, command, args)
    target = build_request(ls, command, kind, args)
    folder, request = target.folder, target.request
    job = Job(command, msg_id=ls.protocol._ctx_msg_id.get(None))
    progress = Progress(ls, TITLES[kind])
    relay = StreamRelay(ls, job, progress)
    loop = asyncio.get_running_loop()
    waiting = ls.worker.busy or ls.worker.queued > 0
    job.token = await progress.begin(
        f"waiting for the current request ({ls.worker.queued + 1} ahead)" if waiting else "starting"
    )
    apply = ls.apply_from_worker(loop, job, folder, f"{TITLES[kind]}: {request.instruction}"[:120])

    def work() -> Outcome:
        if folder.session is None:  # the first request of a folder loads the model
            relay.sink("progress", "loading the model")
        session = folder.ensure_session(ls.settings)
        job.turn = session.log.next_turn()
        return session.run(request, relay.sink, job.cancel, apply)

    end_message = "cancelled"
    try:
        outcome = await ls.worker.run(job, work)
        end_message = "done"
    except asyncio.CancelledError:
        job.cancel.set()
        raise
    except Cancelled:
        raise JsonRpcRequestCancelled(f"{command} was cancelled; nothing was written") from None
    except BackendError as exc:
        end_message = "failed"
        raise JsonRpcServerError(f"{command} failed: {exc}", BACKEND_ERROR) from None
    finally:
        relay.flush()
        progress.end(end_message)
    result = outcome.result
    folder.last_stats = result.stats.to_dict()
    reply: dict[str, Any] = {"turn": outcome.turn, "stats": folder.last_stats}
    if kind in ("explain", "ask"):
        return {"text": result.text, "reasoning": list(result.reasoning), **reply}
    reply |= {
        "applied": outcome.applied,
        "changes": changes_of(folder, result.changes),
        "summary": outcome.summary,
    }
    if not outcome.applied:
        reply["failureReason"] = outcome.failure_reason or (
            "the model proposed no changes" if not result.changes else "not applied"
        )
    return reply


def folder_of(ls: GlmServer, command: str, obj: dict[str, Any]) -> Folder:
    check_arguments(ls, command, (obj,))
    found = resolve_uri(ls, command, obj, required=False)
    folder = found[0] if found else ls.default_folder()
    if folder is None:
        raise bad(command, "there is no workspace folder")
    return folder


def log_of(ls: GlmServer, folder: Folder) -> ThinkingLog:
    if folder.session is not None:
        return folder.session.log
    return ThinkingLog(ls.settings.state_dir(folder.root))


async def cancel(ls: GlmServer, args: tuple[Any, ...]) -> dict[str, Any]:
    one_object("glm.cancel", args)
    jobs = ls.worker.jobs()
    for job in jobs:
        job.cancel.set()
    return {"cancelled": len(jobs)}


async def status(ls: GlmServer, args: tuple[Any, ...]) -> dict[str, Any]:
    obj = one_object("glm.status", args)
    folder = folder_of(ls, "glm.status", obj)
    records = log_of(ls, folder).records()
    stats = folder.last_stats or (records[-1].get("stats") if records else None)
    s = ls.settings
    return {
        "backend": s.backend,
        "model": s.model,
        "busy": ls.worker.busy,
        "queued": ls.worker.queued,
        "turns": len(records),
        "stats": stats,
    }


async def thinking_show(ls: GlmServer, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    obj = one_object("glm.thinking.show", args)
    limit = limit_field("glm.thinking.show", obj)
    folder = folder_of(ls, "glm.thinking.show", obj)
    records = log_of(ls, folder).records()
    if limit is not None:
        records = records[-limit:]
    return [
        {
            "turn": r.get("turn"),
            "command": r.get("command"),
            "thinking": r.get("thinking"),
            "reasoning": [
                m["reasoning_content"]
                for m in r.get("messages", [])
                if m.get("role") == "assistant" and m.get("reasoning_content")
            ],
            "summary": r.get("summary", ""),
        }
        for r in records
    ]


async def thinking_reset(ls: GlmServer, args: tuple[Any, ...]) -> dict[str, Any]:
    obj = one_object("glm.thinking.reset", args)
    folder = folder_of(ls, "glm.thinking.reset", obj)
    # Through the worker: a running request finishes (and logs) before the log moves aside.
    job = Job("glm.thinking.reset")
    archived = await ls.worker.run(
        job, lambda: folder.session.reset() if folder.session else log_of(ls, folder).archive()
    )
    return {"archived": archived}
