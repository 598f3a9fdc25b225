"""stdio for ACP with stdout kept for the protocol, and a guard in front of the SDK's reader.

Anything else that prints (a library's warning, a progress bar) goes to stderr instead of
corrupting the JSON-RPC stream. The guard answers lines that are not a JSON object itself:
the SDK (0.12) drops invalid JSON without a reply and crashes on a JSON array or scalar, so a
hostile or broken client could silently lose requests or end the agent.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from typing import Any, BinaryIO

PARSE_ERROR, INVALID_REQUEST = -32700, -32600


async def protocol_streams(limit: int) -> tuple[asyncio.StreamWriter, asyncio.StreamReader]:
    loop = asyncio.get_running_loop()
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)  # fd 1 (print, C libraries) now writes to stderr
    raw = asyncio.StreamReader(limit=limit)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(raw), sys.stdin)
    out = os.fdopen(protocol_fd, "wb", buffering=0)
    if stat.S_ISREG(os.fstat(protocol_fd).st_mode):  # `glm-lsp acp > file`: no pipe transport
        protocol = _WriteProtocol()
        transport: asyncio.WriteTransport = _FileTransport(out)
    else:
        transport, protocol = await loop.connect_write_pipe(_WriteProtocol, out)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    checked = asyncio.StreamReader(limit=limit)
    _pumps.add(loop.create_task(_pump(raw, checked, writer)))
    return writer, checked


_pumps: set[asyncio.Task[None]] = set()  # referenced, so the pump is not garbage-collected


async def _pump(raw: asyncio.StreamReader, checked: asyncio.StreamReader, writer: Any) -> None:
    try:
        while True:
            try:
                line = await raw.readline()
            except ValueError:  # longer than the limit: the reader skipped it
                writer.write(_error(INVALID_REQUEST, "the message is larger than the limit"))
                continue
            if not line:
                break
            problem = check_line(line)
            if problem is None:
                checked.feed_data(line)
            elif problem:
                writer.write(problem)
    finally:
        checked.feed_eof()


def check_line(line: bytes) -> bytes | None:
    """None when the SDK may have the line; else the error to send (b"" for a blank line)."""
    if not line.strip():
        return b""
    try:
        message = json.loads(line)
    except ValueError as exc:
        return _error(PARSE_ERROR, f"Parse error: the line is not JSON ({exc})")
    if isinstance(message, list):
        return _error(INVALID_REQUEST, "Invalid Request: ACP has no batches; send one object")
    if not isinstance(message, dict):
        return _error(INVALID_REQUEST, "Invalid Request: a message must be a JSON object")
    return None


def _error(code: int, message: str) -> bytes:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return json.dumps(body).encode() + b"\n"


class _WriteProtocol(asyncio.streams.FlowControlMixin):
    """What StreamWriter.drain needs from a write-only pipe protocol."""


class _FileTransport(asyncio.WriteTransport):
    """Writes to a regular file, which asyncio's pipe transport refuses; such writes do not wait
    on a reader, so each is done at once."""

    def __init__(self, out: BinaryIO) -> None:
        super().__init__()
        self._out = out

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view and not self._out.closed:  # unbuffered: a write may take only part
            view = view[self._out.write(view) or 0 :]

    def is_closing(self) -> bool:
        return self._out.closed

    def close(self) -> None:
        self._out.close()

    def abort(self) -> None:
        self.close()

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0
