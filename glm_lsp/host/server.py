"""The host process: a unix socket front-ends attach to, the engine behind it, the OpenAI
endpoint beside it, and its registration (registry.py) for as long as it runs."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from glm_lsp import __version__
from glm_lsp.errors import UsageError
from glm_lsp.host import registry
from glm_lsp.host.engine import Engine, Generation
from glm_lsp.host.protocol import MAX_LINE, decode, encode
from glm_lsp.runtime.base import BackendError, Cancelled, CompletionRequest
from glm_lsp.wire.converter import converter

log = logging.getLogger(__name__)
RUN_LOCK = "host.run"  # held by the running host for its whole life: one host per user
_ids = itertools.count(1)
# The OpenAI endpoint (openai_api.py) starts beside the socket: (url, close) from the engine.
StartEndpoint = Callable[[Engine], Awaitable[tuple[str, Callable[[], Awaitable[None]]]]]


class Connection:
    def __init__(self, writer: asyncio.StreamWriter, client: str, pid: int | None) -> None:
        self.id = next(_ids)
        self.writer, self.client, self.pid = writer, client, pid
        self.inflight: dict[Any, Generation] = {}
        self.loop = asyncio.get_running_loop()
        self.lock = threading.Lock()
        self.outbox: list[dict[str, Any]] = []
        self.flush_pending = False

    def send(self, message: dict[str, Any]) -> None:
        """From any thread: queued and written in order. The generation thread sends a message
        per token, so they are batched: one wake-up of the loop and one write per batch, and
        neighbouring text of one request joined (the per-token cost stays off the decode)."""
        with self.lock:
            self.outbox.append(message)
            if self.flush_pending:
                return
            self.flush_pending = True
        self.loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self.lock:
            batch, self.outbox, self.flush_pending = self.outbox, [], False
        joined: list[dict[str, Any]] = []
        for message in batch:
            last = joined[-1] if joined else None
            if (
                last is not None
                and "text" in message
                and "text" in last
                and last["id"] == message["id"]
            ):
                joined[-1] = {**last, "text": last["text"] + message["text"]}
            else:
                joined.append(message)
        if not self.writer.is_closing():
            self.writer.write(b"".join(encode(m) for m in joined))


class HostServer:
    def __init__(
        self,
        engine: Engine,
        *,
        preload: str | None = None,
        endpoint: StartEndpoint | None = None,
    ) -> None:
        self.engine, self.preload, self.endpoint = engine, preload, endpoint
        self.connections: dict[int, Connection] = {}
        self.tasks: set[asyncio.Future[None]] = set()
        self.openai: str | None = None
        self.stopping: asyncio.Event | None = None
        self.token = registry.token(create=True) or ""

    # -- life ----------------------------------------------------------------------------------
    def run(self) -> int:
        return asyncio.run(self._main())

    async def _main(self) -> int:
        folder = registry.host_dir()
        run_lock = _hold_run_lock(folder / RUN_LOCK)
        sock = folder / registry.SOCKET
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock)  # the run lock is ours: any socket there is a dead host's
        self.stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, self.stopping.set)
        old_umask = os.umask(0o177)  # the socket is 0600 from the moment it exists
        try:
            server = await asyncio.start_unix_server(self._client, path=str(sock), limit=MAX_LINE)
        finally:
            os.umask(old_umask)
        close_endpoint = None
        if self.endpoint is not None:
            self.openai, close_endpoint = await self.endpoint(self.engine)
        registry.write(
            registry.Registration(os.getpid(), __version__, str(sock), self.openai, time.time())
        )
        print(
            f"glm-lsp host {__version__} (pid {os.getpid()}) listening on {sock}"
            + (f"; OpenAI endpoint {self.openai}" if self.openai else ""),
            flush=True,
        )
        if self.preload:
            self.engine.call(lambda: self.engine.preload(self.preload))
        idle = asyncio.create_task(self._keep_alive())
        try:
            await self.stopping.wait()
        finally:
            idle.cancel()
            server.close()
            registry.remove(os.getpid())
            if close_endpoint is not None:
                await close_endpoint()
            for conn in list(self.connections.values()):
                conn.writer.close()
            await asyncio.to_thread(self.engine.close)
            os.close(run_lock)
        return 0

    async def _keep_alive(self) -> None:
        keep = self.engine.keep_alive_s
        if keep is None:
            return
        while True:
            await asyncio.sleep(min(max(keep / 4, 0.05), 10.0))  # a timer, not a wait on work
            self.engine.unload_if_idle()

    # -- one client ------------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn: Connection | None = None
        try:
            hello = decode(await asyncio.wait_for(reader.readline(), 10))
            given = hello.get("token")
            if hello.get("op") != "hello" or not isinstance(given, str):
                raise PermissionError("the first message must be a hello with the host token")
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                raise PermissionError("wrong host token")
            pid = hello.get("pid")
            conn = Connection(
                writer, str(hello.get("client", "lsp")), pid if isinstance(pid, int) else None
            )
            self.connections[conn.id] = conn
            conn.send(
                {"hello": {"pid": os.getpid(), "version": __version__, "openai": self.openai}}
            )
            while line := await reader.readline():
                self._dispatch(conn, decode(line))
        except PermissionError as exc:
            writer.write(encode({"error": str(exc), "kind": "auth"}))
        except (
            ValueError,
            asyncio.TimeoutError,
            asyncio.IncompleteReadError,
            ConnectionError,
        ) as exc:
            log.debug("client dropped: %s", exc)
        finally:
            if conn is not None:
                for gen in conn.inflight.values():  # a client that is gone wants nothing more
                    gen.cancel.set()
                self.connections.pop(conn.id, None)
            with contextlib.suppress(Exception):
                writer.close()

    def _dispatch(self, conn: Connection, msg: dict[str, Any]) -> None:
        op, rid = msg.get("op"), msg.get("id")
        if op == "cancel":
            gen = conn.inflight.get(msg.get("target"))
            if gen is not None:
                gen.cancel.set()
            return
        handlers = {
            "complete": self._complete,
            "count": self._count,
            "save": self._save,
            "status": self._status,
            "stop": self._stop,
        }
        handler = handlers.get(op)  # type: ignore[arg-type]
        if handler is None:
            conn.send({"id": rid, "error": f"unknown op {op!r}", "kind": "usage"})
            return
        task = asyncio.ensure_future(self._answer(conn, rid, handler(conn, rid, msg)))
        self.tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, conn: Connection, rid: Any, work: Awaitable[Any]) -> None:
        try:
            conn.send({"id": rid, "done": await work})
        except Cancelled:
            conn.send({"id": rid, "error": "cancelled", "kind": "cancelled"})
        except (BackendError, UsageError) as exc:
            conn.send({"id": rid, "error": str(exc), "kind": "backend"})
        except Exception as exc:  # a bug: the client gets one sentence, the log the traceback
            log.exception("host request failed")
            conn.send(
                {
                    "id": rid,
                    "error": f"the host failed: {type(exc).__name__}: {exc}",
                    "kind": "backend",
                }
            )

    # -- requests ----------------------------------------------------------------------------------
    async def _complete(self, conn: Connection, rid: Any, msg: dict[str, Any]) -> dict[str, Any]:
        model, spec, req = str(msg["model"]), msg.get("conversation") or {}, msg["request"]
        request = CompletionRequest(
            prompt=str(req["prompt"]),
            max_tokens=int(req.get("max_tokens", 4096)),
            temperature=float(req.get("temperature", 0.7)),
            top_p=float(req.get("top_p", 1.0)),
        )
        gen = Generation(
            model=model,
            conversation=self._conversation_for(conn, model, spec),
            request=request,
            on_text=lambda piece: conn.send({"id": rid, "text": piece}),
            on_status=lambda m, p: conn.send({"id": rid, "status": m, "percent": p}),
            client=conn.client,
            scripted=msg.get("scripted") if isinstance(msg.get("scripted"), str) else None,
            speculative=bool(msg.get("speculative", True)),
            draft_tokens=max(1, int(msg.get("draftTokens", 8))),
        )
        conn.inflight[rid] = gen
        try:
            completion = await asyncio.wrap_future(self.engine.submit(gen))
        finally:
            conn.inflight.pop(rid, None)
        return {
            "text": completion.text,
            "stats": converter.unstructure(completion.stats),
            "finish": completion.finish_reason,
        }

    def _conversation_for(self, conn: Connection, model: str, spec: dict[str, Any]) -> Any:
        """A workspace's conversation is one per (model, folder, kvBits), whoever asks for it;
        without a folder it is this connection's own."""
        folder = spec.get("dir")
        kv_bits = spec.get("kvBits")
        if folder is not None and not Path(str(folder)).is_absolute():
            raise UsageError(f"conversation dir {folder!r} is not an absolute path")
        key = _conversation_key(conn, model, spec)

        def choose(loaded: Any) -> Any:
            return self.engine.conversation(
                key,
                loaded,
                lambda: loaded.conversation(
                    kv_bits=kv_bits,
                    state_dir=Path(folder) if folder else None,
                    persist=bool(spec.get("persist", True)),
                ),
            )

        return choose

    async def _count(self, conn: Connection, rid: Any, msg: dict[str, Any]) -> int:
        model, text = str(msg["model"]), str(msg["text"])

        def count() -> int:  # a tokenizer, beside the generation thread: no wait on a generation
            return len(self.engine.tokenizer(model).encode(text, add_special_tokens=False))

        return await asyncio.to_thread(count)

    async def _save(self, conn: Connection, rid: Any, msg: dict[str, Any]) -> bool:
        model, spec = str(msg["model"]), msg.get("conversation") or {}
        key = _conversation_key(conn, model, spec)

        def save() -> bool:
            conv = self.engine.conversations.get(key)
            if conv is not None:
                conv.save()
            return conv is not None

        return await asyncio.wrap_future(self.engine.call(save))

    async def _status(self, conn: Connection, rid: Any, msg: dict[str, Any]) -> dict[str, Any]:
        return self.status()

    async def _stop(self, conn: Connection, rid: Any, msg: dict[str, Any]) -> bool:
        assert self.stopping is not None
        asyncio.get_running_loop().call_later(0.05, self.stopping.set)  # after this answer
        return True

    def status(self) -> dict[str, Any]:
        engine = self.engine.status()
        clients = {  # front-end processes; the command line asking for this is not one
            (c.client, c.pid or -c.id)
            for c in self.connections.values()
            if c.client not in ("cli", "probe")
        }
        return {
            "pid": os.getpid(),
            "version": __version__,
            "socket": str(registry.host_dir() / registry.SOCKET),
            "openai": self.openai,
            "keepAlive": None
            if self.engine.keep_alive_s is None
            else self.engine.keep_alive_s / 60,
            "clients": len(clients),
            "clientKinds": sorted({kind for kind, _ in clients}),
            **engine,
        }


def _conversation_key(conn: Connection, model: str, spec: dict[str, Any]) -> tuple[Any, ...]:
    """One conversation per (model, folder, kvBits), whoever asks; without a folder, the
    connection's own."""
    folder, kv_bits = spec.get("dir"), spec.get("kvBits")
    return (model, str(folder), kv_bits) if folder else ("connection", conn.id, model, kv_bits)


def _hold_run_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        reg = registry.read()
        pid = f" (pid {reg.pid})" if reg else ""
        raise UsageError(
            f"a glm-lsp host is already running{pid}; `glm-lsp host stop` stops it"
        ) from None
    return fd
