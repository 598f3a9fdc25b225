"""A real MCP server on the SDK's MCPServer for the MCP tests: stdio by default, streamable HTTP
on 127.0.0.1 with `--http PORT`. One tool each for a sum, a crash and a slow answer."""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

app = MCPServer("test-tools")


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@app.tool()
def remember(text: str) -> str:
    """Store a note (not read-only: it changes the server's state)."""
    return f"remembered {text!r} in process {os.getpid()}"


@app.tool()
def crash() -> str:
    """Exit the server process at once."""
    os._exit(3)


@app.tool()
async def slow(seconds: float) -> str:
    """Answer after a while."""
    await anyio.sleep(seconds)
    return "finally"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        app.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        app.run()
