"""The glm.* commands of the README's LSP commands over the core: agent requests on the worker,
the rest on the loop. Arguments and results are the wire models; this adds LSP progress,
streaming and JSON-RPC errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcRequestCancelled, JsonRpcServerError

from glm_lsp.agent.session import Outcome
from glm_lsp.core.folder import Folder
from glm_lsp.core.requests import KINDS, Target, arguments, build_request, folder_of
from glm_lsp.core.results import agent_result, logged_stats, thinking_turns
from glm_lsp.core.worker import Job
from glm_lsp.memory.thinking_log import ThinkingLog
from glm_lsp.runtime.base import BackendError, Cancelled
from glm_lsp.runtime.factory import uses_host
from glm_lsp.server.answers import deliver
from glm_lsp.server.app import GlmServer
from glm_lsp.server.jobs import Progress, StreamRelay
from glm_lsp.wire.commands import (
    AnswerResult,
    CancelResult,
    EditResult,
    McpServerStatus,
    ResetResult,
    StartedResult,
    StatusResult,
    ThinkingTurn,
)
from glm_lsp.wire.converter import converter

log = logging.getLogger(__name__)
BACKEND_ERROR = -32001
TITLES = {
    "explain": "GLM: Explain",
    "refactor": "GLM: Refactor",
    "fix": "GLM: Fix",
    "ask": "GLM: Ask",
}


async def run_agent(
    ls: GlmServer, command: str, args: tuple[Any, ...]
) -> AnswerResult | EditResult | StartedResult:
    """Our plugins (the stream capability) wait for the result; any other client gets it answered
    at once and the outcome the standard way (answers.py), so no request holds its editor."""
    target = build_request(ls, command, args)  # bad arguments are an error either way
    if ls.streams():
        job = Job(command, msg_id=ls.protocol.msg_id)
        return (await _run(ls, command, target, job))[1]
    job = Job(command)  # answered: only glm.cancel and the progress token can reach it
    root = target.folder.root
    ahead = sum(1 for r, _task in ls.detached.values() if r == root)
    turn = log_of(ls, target.folder).next_turn() + ahead
    status = "queued" if ls.jobs() else "started"
    task = asyncio.ensure_future(_detached(ls, command, target, job))
    ls.detached[job] = (root, task)
    task.add_done_callback(lambda _t: ls.detached.pop(job, None))
    return StartedResult(turn, status)


async def _detached(ls: GlmServer, command: str, target: Target, job: Job) -> None:
    title = TITLES[KINDS[command]]
    try:
        outcome, result = await _run(ls, command, target, job)
    except JsonRpcRequestCancelled as exc:
        ls.window_show_message(lsp.ShowMessageParams(type=lsp.MessageType.Info, message=str(exc)))
        return
    except JsonRpcServerError as exc:
        ls.show_error(f"{title}: {exc.message}")
        return
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # nobody waits for an answer: the user must see it
        log.exception("%s failed", command)
        ls.show_error(f"{title} failed: {exc}")
        return
    await deliver(ls, log_of(ls, target.folder).state_dir, title, outcome, result)


async def _run(
    ls: GlmServer, command: str, target: Target, job: Job
) -> tuple[Outcome, AnswerResult | EditResult]:
    kind = KINDS[command]
    folder, request = target.folder, target.request
    progress = Progress(ls, TITLES[kind])
    relay = StreamRelay(ls, job, progress, stream=ls.streams())
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
            on_host = uses_host(ls.settings)  # the host shows its own load, with a percentage
            relay.sink(
                "progress", "attaching to the glm-lsp host" if on_host else "loading the model"
            )
        session = folder.ensure_session(ls.settings)

        def numbered(turn: int) -> None:  # under the conversation's lock: the turn it logs
            job.turn = turn

        return session.run(request, relay.sink, job.cancel, apply, ask, prompt, on_turn=numbered)

    end_message = "failed"  # any exception, not only a backend's, ends the progress as failed
    try:
        outcome = await ls.worker.run(job, work)
        end_message = "done"
    except asyncio.CancelledError:
        end_message = "cancelled"
        job.cancel.set()
        raise
    except Cancelled:
        end_message = "cancelled"
        raise JsonRpcRequestCancelled(f"{command} was cancelled; nothing was written") from None
    except BackendError as exc:
        raise JsonRpcServerError(f"{command} failed: {exc}", BACKEND_ERROR) from None
    finally:
        relay.flush()
        progress.end(end_message)  # every path ends the progress: no client keeps a stale one
    folder.last_stats = outcome.result.stats
    return outcome, agent_result(folder, kind, outcome)


def log_of(ls: GlmServer, folder: Folder) -> ThinkingLog:
    if folder.session is not None:
        return folder.session.log
    return ThinkingLog(ls.settings.state_dir(folder.root))


async def cancel(ls: GlmServer, command: str, args: tuple[Any, ...]) -> CancelResult:
    arguments(command, args)
    jobs = ls.jobs()
    for job in jobs:
        job.cancel.set()
    return CancelResult(len(jobs))


async def status(ls: GlmServer, command: str, args: tuple[Any, ...]) -> StatusResult:
    folder = folder_of(ls, command, arguments(command, args).uri)
    records = log_of(ls, folder).records()
    stats = folder.last_stats or logged_stats(records[-1] if records else None)
    s = ls.settings
    return StatusResult(
        s.backend,
        s.model,
        ls.worker.busy,
        ls.worker.queued,
        len(records),
        stats,
        converter.structure(mcp_status(ls, folder), list[McpServerStatus]),
    )


def mcp_status(ls: GlmServer, folder: Folder) -> list[dict[str, Any]]:
    """The folder's MCP servers, their state and tools (configured ones before the first
    request started them)."""
    if folder.session is not None:
        return folder.session.mcp.status(ls.settings)
    from glm_lsp.mcp.tools import McpServers

    return McpServers(folder.root, ls.settings.state_dir(folder.root)).status(ls.settings)


async def thinking_show(ls: GlmServer, command: str, args: tuple[Any, ...]) -> list[ThinkingTurn]:
    a = arguments(command, args)
    folder = folder_of(ls, command, a.uri)
    return thinking_turns(log_of(ls, folder).records(), a.limit)


async def thinking_reset(ls: GlmServer, command: str, args: tuple[Any, ...]) -> ResetResult:
    folder = folder_of(ls, command, arguments(command, args).uri)
    # Through the worker: a running request finishes (and logs) before the log moves aside.
    job = Job(command)
    archived = await ls.worker.run(
        job, lambda: folder.session.reset() if folder.session else log_of(ls, folder).archive()
    )
    return ResetResult(archived)
