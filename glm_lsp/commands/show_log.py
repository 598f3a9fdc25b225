"""`glm-lsp log`: the workspace's preserved-thinking log, readable or as JSON lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from glm_lsp.config import Settings
from glm_lsp.memory.thinking_log import ThinkingLog


def show_log(workspace: Path, settings: Settings, *, as_json: bool) -> int:
    from glm_lsp.errors import EXIT_OK, UsageError

    root = workspace.resolve()
    if not root.is_dir():
        raise UsageError(f"workspace {workspace} is not a directory")
    log = ThinkingLog(settings.state_dir(root))
    records = log.records()
    if as_json:
        for record in records:
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        return EXIT_OK
    if not records:
        print(f"no requests logged yet in {log.path}")
        return EXIT_OK
    for record in records:
        stats = record.get("stats") or {}
        print(
            f"── turn {record.get('turn')} · {record.get('command')} · thinking "
            f"{record.get('thinking')} · {record.get('time')}"
        )
        for m in record["messages"]:
            role = m.get("role")
            if role == "user":
                print("user: " + str(m.get("content", "")).splitlines()[0])
            elif role == "assistant":
                if m.get("reasoning_content"):
                    print("  thinking: " + m["reasoning_content"].replace("\n", "\n            "))
                for call in m.get("tool_calls") or ():
                    fn = call.get("function", call)
                    print(
                        f"  → {fn.get('name')} {json.dumps(fn.get('arguments'), ensure_ascii=False)}"
                    )
                if str(m.get("content") or "").strip():
                    print("  answer: " + str(m["content"]).strip().replace("\n", "\n          "))
        print(
            f"  stats: {stats.get('promptTokens', 0)} prompt ({stats.get('reusedTokens', 0)} reused), "
            f"{stats.get('generatedTokens', 0)} generated; applied: {record.get('applied')}"
        )
    return EXIT_OK
