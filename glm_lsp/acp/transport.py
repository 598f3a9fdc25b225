"""stdio for ACP with stdout kept for the protocol: anything else that prints (a library's
warning, a progress bar) goes to stderr instead of corrupting the JSON-RPC stream."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any


async def protocol_streams(limit: int) -> tuple[asyncio.StreamWriter, asyncio.StreamReader]:
    loop = asyncio.get_running_loop()
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)  # fd 1 (print, C libraries) now writes to stderr
    reader = asyncio.StreamReader(limit=limit)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = os.fdopen(protocol_fd, "wb", buffering=0)
    transport, protocol = await loop.connect_write_pipe(_WriteProtocol, out)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return writer, reader


class _WriteProtocol(asyncio.streams.FlowControlMixin):
    """What StreamWriter.drain needs from a write-only pipe protocol."""

    def connection_lost(self, exc: Any) -> None:
        super().connection_lost(exc)
