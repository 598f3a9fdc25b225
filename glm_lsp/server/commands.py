"""The glm.* commands of the README's LSP commands: agent requests on the worker, the rest on the loop."""

from __future__ import annotations

import asyncio
from typing import Any

from pygls.exceptions import JsonRpcRequestCancelled, JsonRpcServerError

from glm_lsp.agent.edits import ChangeSet
from glm_lsp.agent.landing import Landing
from glm_lsp.agent.session import Outcome
from glm_lsp.core.worker import Job
from glm_lsp.memory.thinking_log import ThinkingLog
from glm_lsp.runtime.base import BackendError, Cancelled
from glm_lsp.server.app import Folder, GlmServer
from glm_lsp.server.jobs import Progress, StreamRelay
from glm_lsp.server.requests import (
    bad,
    build_request,
    check_arguments,
    limit_field,
    one_object,
    resolve_uri,
)

BACKEND_ERROR = -32001
TITLES = {
    "explain": "GLM: Explain",
    "refactor": "GLM: Refactor",
    "fix": "GLM: Fix",
    "ask": "GLM: Ask",
}


def changes_of(
    folder: Folder, change_set: ChangeSet, landings: list[Landing] | None = None
) -> list[dict[str, Any]]:
    """The result's `changes`; `sensitive: true` marks a file that runs code on its own;
    after a review, `applied` per change and `hunks` for a partly taken file."""
    out = []
    for i, c in enumerate(change_set.changes):
        item: dict[str, Any] = {"uri": folder.uri(c.path), "kind": c.kind}
        if c.sensitive:
            item["sensitive"] = True
        if landings is not None:
            got = landings[i].to_dict()
            item |= {k: v for k, v in got.items() if k in ("applied", "hunks")}
        out.append(item)
    return out


async def run_agent(ls: GlmServer, kind: str, args: tuple[Any, ...]) -> dict[str, Any]:
    command = f"glm.{kind}"
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
    ask = ls.ask_from_worker(loop, job)
    prompt = ls.prompt_from_worker(loop, job)

    def work() -> Outcome:
        if folder.session is None:  # the first request of a folder loads the model
            relay.sink("progress", "loading the model")
        session = folder.ensure_session(ls.settings)
        job.turn = session.log.next_turn()
        return session.run(request, relay.sink, job.cancel, apply, ask, prompt)

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
        "changes": changes_of(folder, result.changes, outcome.landings),
        "summary": outcome.summary,
    }
    if result.verification is not None:
        reply["verification"] = result.verification.to_dict()
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
        "mcpServers": mcp_status(ls, folder),
    }


def mcp_status(ls: GlmServer, folder: Folder) -> list[dict[str, Any]]:
    """The folder's MCP servers, their state and tools (configured ones before the first
    request started them)."""
    if folder.session is not None:
        return folder.session.mcp.status(ls.settings)
    from glm_lsp.agent.mcp_tools import McpServers

    return McpServers(folder.root, ls.settings.state_dir(folder.root)).status(ls.settings)


async def thinking_show(ls: GlmServer, args: tuple[Any, ...]) -> list[dict[str, Any]]:
    obj = one_object("glm.thinking.show", args)
    folder = folder_of(ls, "glm.thinking.show", obj)
    limit = limit_field(obj)
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
