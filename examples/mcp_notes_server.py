"""An example MCP server for glm-lsp (see the README's MCP tools): notes kept in a JSON file.

Run over stdio by glm-lsp itself, from the user's settings:
    "glm.mcpServers": {"notes": {"command": "python", "args": ["/path/to/mcp_notes_server.py"]}}
or over streamable HTTP (then "url": "http://127.0.0.1:8765/mcp"):
    python mcp_notes_server.py --http 8765
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

NOTES = Path(os.environ.get("NOTES_FILE", "notes.json"))
app = MCPServer("notes")


def _load() -> list[str]:
    return json.loads(NOTES.read_text()) if NOTES.exists() else []


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
def list_notes() -> str:
    """All notes, one a line."""
    return "\n".join(_load()) or "(no notes)"


@app.tool()
def add_note(text: str) -> str:
    """Append a note."""
    notes = [*_load(), text]
    NOTES.write_text(json.dumps(notes, indent=1))
    return f"{len(notes)} notes"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        app.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        app.run()
