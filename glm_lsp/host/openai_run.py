"""One completion of the host's OpenAI endpoint on the engine (`Run`), answered as one JSON body
or as a server-sent event stream; a client that hangs up cancels it and the model is free again."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from glm_lsp.host.engine import Generation
from glm_lsp.host.openai_request import ChatRequest, error_body
from glm_lsp.host.openai_response import Envelope, Shaper, sse
from glm_lsp.runtime.base import BackendError, Cancelled, Completion, CompletionRequest
from glm_lsp.runtime.mlx import MLXConversation, MLXModel

if TYPE_CHECKING:
    from glm_lsp.host.openai_api import OpenAIEndpoint

STOPPING = "the host is stopping; send the request again"


def server_error(message: str, status: int = 500) -> JSONResponse:
    return JSONResponse(error_body(message, kind="server_error", code="server_error"), status)


async def _disconnected(receive: Receive) -> None:
    """Returns when the client hangs up (the body has been read, so nothing else comes)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class Run:
    """One completion on the engine; text pieces and status arrive on `queue` from its thread."""

    DONE = object()

    def __init__(self, endpoint: OpenAIEndpoint, chat: ChatRequest, prompt: str) -> None:
        self.endpoint, self.chat = endpoint, chat
        self.reply: str | None = None
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(self.queue.put_nowait, item)

        def conversation(model: MLXModel) -> MLXConversation:
            # Generation thread, as the generation starts: scripted replies go out in the order
            # completions run (the engine reads gen.scripted once it has the conversation).
            if endpoint.scripted is not None:
                self.gen.scripted = self.reply = endpoint.scripted.next()
            return endpoint.pool.choose(model, prompt)

        self.gen = Generation(
            model=chat.model,
            conversation=conversation,
            request=CompletionRequest(
                prompt=prompt,
                max_tokens=chat.max_tokens,
                temperature=chat.temperature,
                top_p=chat.top_p,
            ),
            on_text=put if chat.stream else lambda _piece: None,
            on_status=lambda message, percent: put((message, percent)) if chat.stream else None,
            client="openai",
        )
        endpoint.running.add(self)
        submitted = endpoint.engine.submit(self.gen)
        submitted.add_done_callback(self._give_back)
        self.future = asyncio.wrap_future(submitted)
        self.future.add_done_callback(self._settled)

    def _give_back(self, done: Future[Completion]) -> None:
        """Generation thread, before the next generation takes a reply: a reply nobody got (the
        completion was cancelled or failed) is the next completion's."""
        failed = done.cancelled() or done.exception() is not None
        if failed and self.reply is not None and self.endpoint.scripted is not None:
            self.endpoint.scripted.unread()

    def _settled(self, _future: asyncio.Future[Completion]) -> None:
        self.endpoint.running.discard(self)
        self.queue.put_nowait(self.DONE)

    async def stop(self) -> None:
        """The client is gone: stop the generation and wait until the model is free."""
        self.gen.cancel.set()
        with contextlib.suppress(Exception):
            await self.future

    async def answer(self, receive: Receive) -> Response:
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({self.future, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not self.future.done():
            await self.stop()
            return Response(status_code=499)  # nobody reads it
        try:
            completion = self.future.result()
        except Cancelled:
            return server_error(STOPPING, 503)
        except BackendError as exc:
            return server_error(str(exc))
        shaper = Shaper(self.chat.tools, self.chat.enable_thinking)
        shaper.feed(completion.text)
        shaper.finish()
        envelope = Envelope(self.chat.model)
        return JSONResponse(envelope.completion(shaper, completion.finish_reason, completion.stats))


class EventStream:
    """The streamed answer (SSE). A client that hangs up cancels its generation: the disconnect
    is watched while the answer streams, whatever the server's ASGI version does about it."""

    def __init__(self, run: Run) -> None:
        self.run = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        pump = asyncio.ensure_future(self._pump(send))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
            failure = pump.exception() if pump.done() and not pump.cancelled() else None
            if failure is not None and not isinstance(failure, OSError):  # OSError: a hang-up
                raise failure
        finally:
            gone.cancel()
            pump.cancel()
            await self.run.stop()  # at once when it is over; else the model is freed first

    async def _pump(self, send: Send) -> None:
        chat, run = self.run.chat, self.run
        envelope, shaper = Envelope(chat.model), Shaper(chat.tools, chat.enable_thinking)

        async def body(raw: bytes, more: bool = True) -> None:
            await send({"type": "http.response.body", "body": raw, "more_body": more})

        async def data(payload: dict[str, Any] | str, more: bool = True) -> None:
            await body(sse(payload), more)

        await data(envelope.chunk({"role": "assistant", "content": ""}))
        while (item := await run.queue.get()) is not Run.DONE:
            if isinstance(item, tuple):  # waiting for the model, or loading it: an SSE comment
                message, percent = item
                note = message + (f" {percent}%" if percent is not None else "")
                await body(f": {note}\n\n".encode())
            else:
                for delta in shaper.feed(item):
                    await data(envelope.chunk(delta))
        try:
            completion = run.future.result()
        except (Cancelled, BackendError) as exc:
            message = STOPPING if isinstance(exc, Cancelled) else str(exc)
            await data(error_body(message, kind="server_error", code="server_error"))
            await data("[DONE]", more=False)
            return
        for delta in shaper.finish():
            await data(envelope.chunk(delta))
        await data(envelope.chunk({}, shaper.finish_reason(completion.finish_reason)))
        if chat.include_usage:
            await data(envelope.chunk(None, stats=completion.stats))
        await data("[DONE]", more=False)
