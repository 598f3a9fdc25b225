"""The host's socket protocol: one JSON object per line, both ways.

A client opens with `{"op": "hello", "token", "client", "pid"}`; then requests carry an `id`, and
the host answers each with events of that id: `status` (message, percent), `text`, and finally
`done` (the result) or `error` (`kind`: cancelled | backend | usage). `cancel` names an id. One
connection per conversation keeps the client simple: a request's events are read in order.
"""

from __future__ import annotations

import json
from typing import Any

MAX_LINE = 64 * 1024 * 1024  # a prompt of a long conversation, as text
OPS = ("hello", "complete", "cancel", "count", "save", "status", "stop")


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a message must be a JSON object")
    return message
