"""The host's OpenAI-compatible endpoint on 127.0.0.1: `GET /v1/models`, `POST /v1/chat/completions`.

Agent harnesses written for LM Studio or mlx_lm.server talk to the host's model through it: prompts
are rendered with our exact GLM-4.7 template, output is parsed by our parser into reasoning, content
and tool calls, and every request continues the KV cache of a slot whose history its prompt extends
(openai_prefix.py), in memory or saved before a restart. Starlette + uvicorn serve it inside the
host's event loop; generations go to the engine's one generation thread like any front-end's
(openai_run.py). Requests are checked in openai_request.py, answers shaped in openai_response.py.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from glm_lsp.errors import UsageError
from glm_lsp.glm import render_prompt
from glm_lsp.host import registry
from glm_lsp.host.engine import Engine
from glm_lsp.host.openai_prefix import PrefixPool
from glm_lsp.host.openai_request import WireError, error_body, parse_request
from glm_lsp.host.openai_run import EventStream, Run, server_error
from glm_lsp.runtime.scripted import ScriptedReplies

log = logging.getLogger(__name__)
MAX_BODY = 64 << 20  # a 200k-token conversation is a few MB of JSON
Close = Callable[[], Awaitable[None]]


def endpoint_starter(
    *, port: int, model: str, scripted_replies: str | None
) -> Callable[[Engine], Awaitable[tuple[str, Close]]]:
    """What `host start --openai-port` hands the host server: start(engine) -> (url, close)."""
    scripted = ScriptedReplies.load(scripted_replies) if scripted_replies else None

    async def start(engine: Engine) -> tuple[str, Close]:
        endpoint = OpenAIEndpoint(engine, model=model, scripted=scripted)
        return await serve(endpoint, port)

    return start


def error(exc: WireError) -> JSONResponse:
    return JSONResponse(error_body(str(exc), param=exc.param, code=exc.code), exc.status)


class BearerAuth:
    """Every path needs the host token; without it the answer is a 401 and nothing else."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not secrets.compare_digest(given, self.expected):
                body = error_body(
                    "missing or wrong API key: send `Authorization: Bearer <token>` with the "
                    "token that `glm-lsp host token` prints",
                    code="invalid_api_key",
                )
                headers = {"WWW-Authenticate": "Bearer"}
                await JSONResponse(body, 401, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class OpenAIEndpoint:
    def __init__(self, engine: Engine, *, model: str, scripted: ScriptedReplies | None) -> None:
        self.engine, self.model, self.scripted = engine, model, scripted
        self.pool = PrefixPool(engine)
        self.running: set[Run] = set()
        self.started = int(time.time())

    def app(self) -> Starlette:
        token = registry.token(create=True) or ""
        return Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
            ],
            middleware=[Middleware(BearerAuth, token=token)],
            exception_handlers={HTTPException: self._http_error, Exception: self._bug},
        )

    def cancel_all(self) -> None:
        for run in list(self.running):
            run.gen.cancel.set()

    # -- routes -----------------------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        loaded = [m["name"] for m in self.engine.status()["models"] if m["loaded"]]
        names = [self.model, *(n for n in loaded if n != self.model)]
        data = [
            {"id": n, "object": "model", "created": self.started, "owned_by": "glm-lsp"}
            for n in names
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        try:
            chat = parse_request(await _body(request), self.model)
            self._check_model(chat.model)
        except WireError as exc:
            return error(exc)
        prompt = render_prompt(
            chat.messages,
            chat.tools,
            enable_thinking=chat.enable_thinking,
            clear_thinking=chat.clear_thinking,
        )
        run = Run(self, chat, prompt)
        if chat.stream:
            return EventStream(run)
        return await run.answer(request.receive)

    def _check_model(self, name: str) -> None:
        if name == self.model or any(m.get("name") == name for m in self.engine.status()["models"]):
            return
        path = Path(name).expanduser()
        if path.is_dir() and (path / "config.json").is_file():
            return
        raise WireError(
            f"the model {name!r} is not served here and is not a local MLX model directory; "
            f"use {self.model!r} (GET /v1/models lists the models)",
            "model",
            status=404,
            code="model_not_found",
        )

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {
            404: f"no route {request.url.path}: this endpoint serves /v1/models and "
            "/v1/chat/completions"
        }.get(exc.status_code, str(exc.detail))
        return JSONResponse(error_body(message, code=str(exc.status_code)), exc.status_code)

    async def _bug(self, request: Request, exc: Exception) -> Response:
        log.exception("OpenAI endpoint request failed", exc_info=exc)
        return server_error(f"the host failed: {type(exc).__name__}: {exc}")


async def _body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise WireError(
                f"the request body is larger than {MAX_BODY >> 20} MiB",
                None,
                status=413,
                code="request_too_large",
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def serve(endpoint: OpenAIEndpoint, port: int) -> tuple[str, Close]:
    """uvicorn in the running loop, on 127.0.0.1 only. Its startup/main_loop/shutdown are called
    one by one rather than `serve()`, which would take over SIGTERM and SIGINT from the host
    (the host saves every KV cache when they come)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"the OpenAI endpoint cannot listen on 127.0.0.1:{port} ({exc.strerror}); "
            "pass another --openai-port, or 0 for a free one"
        ) from None
    config = uvicorn.Config(
        endpoint.app(),
        lifespan="off",
        log_config=None,  # the host's logging stays as it is
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[sock])
    loop_task = asyncio.create_task(server.main_loop())

    async def close() -> None:
        endpoint.cancel_all()  # streams end with an error event instead of holding the stop
        server.should_exit = True
        await loop_task
        await server.shutdown(sockets=[sock])

    return f"http://127.0.0.1:{sock.getsockname()[1]}/v1", close
