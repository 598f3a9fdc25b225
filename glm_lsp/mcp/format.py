"""MCP tools as GLM function tools (`<server>__<tool>`), and MCP results as bounded tool text."""

from __future__ import annotations

import json
import re
from typing import Any

from mcp_types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
    Tool,
)

from glm_lsp.glm.tool_text import MAX_CHARS, error

SEPARATOR = "__"
# A name the GLM tool-call syntax carries as is (no '<', no spaces) and the MCP spec allows.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_DESCRIPTION = 2000


def glm_name(server: str, tool: str) -> str:
    return f"{server}{SEPARATOR}{tool}"


def _plain(value: Any) -> Any:
    """Plain JSON (lists, not tuples; no NaN): the template's tojson and ours print it alike."""
    return json.loads(json.dumps(value, allow_nan=False, default=str))


def glm_tool(server: str, tool: Tool) -> dict[str, Any]:
    """The OpenAI/GLM function schema of one MCP tool."""
    schema = _plain(tool.input_schema or {})
    if not isinstance(schema, dict):
        schema = {}
    # The top-level title and $schema say nothing to the model and cost prompt tokens.
    params = {k: v for k, v in schema.items() if k not in ("$schema", "title")}
    params["type"] = "object"
    if not isinstance(params.get("properties"), dict):
        params["properties"] = {}
    description = (tool.description or tool.title or "").strip()
    if not description:
        description = f"The {tool.name} tool of the MCP server {server}."
    if len(description) > MAX_DESCRIPTION:
        description = description[: MAX_DESCRIPTION - 1] + "…"
    return {
        "type": "function",
        "function": {
            "name": glm_name(server, tool.name),
            "description": description,
            "parameters": params,
        },
    }


def read_only(tool: Tool) -> bool:
    return bool(tool.annotations and tool.annotations.read_only_hint)


def _part(item: Any) -> str:
    if isinstance(item, TextContent):
        return item.text
    if isinstance(item, (ImageContent, AudioContent)):
        kind = "image" if isinstance(item, ImageContent) else "audio"
        size = len(item.data) * 3 // 4  # base64
        return f"[{kind} ({item.mime_type}, about {size} bytes): not shown to the model]"
    if isinstance(item, ResourceLink):
        return f"[resource link: {item.uri}" + (f" ({item.name})" if item.name else "") + "]"
    if isinstance(item, EmbeddedResource):
        res = item.resource
        if isinstance(res, TextResourceContents):
            return f"[resource {res.uri}]\n{res.text}"
        if isinstance(res, BlobResourceContents):
            return f"[resource {res.uri} ({res.mime_type or 'binary'}): not shown to the model]"
    return f"[{getattr(item, 'type', type(item).__name__)} content: not shown to the model]"


def result_text(name: str, result: CallToolResult) -> str:
    """Text parts as they are, a note for everything else, bounded like read_file's output."""
    parts = [_part(item) for item in result.content]
    if not parts and result.structured_content is not None:
        parts = [json.dumps(result.structured_content, ensure_ascii=False, default=str)]
    text = "\n".join(parts) if parts else "(the tool returned nothing)"
    if result.is_error:
        text = error(f"{name} reported an error: {text}")
    if len(text) > MAX_CHARS:
        shown = len(text)
        text = text[:MAX_CHARS] + f"\n[truncated: {MAX_CHARS} of {shown} characters shown]"
    return text
