"""A plan the model states in its answer text, as an ACP `plan` update.

GLM-4.7 has no plan tool; when it writes a numbered list or a task list ("1. Read the parser",
"- [x] Rename foo") that is its plan, and clients such as Zed show it as one. Two items at least,
so a single numbered sentence is not a plan.
"""

from __future__ import annotations

import re

from acp import plan_entry
from acp.schema import PlanEntry

ITEM = re.compile(r"^\s{0,3}(?:\d{1,2}[.)]|[-*] \[( |x|X)\])\s+(\S.*)$")


def parse_plan(text: str) -> list[PlanEntry] | None:
    entries = []
    for line in text.splitlines():
        match = ITEM.match(line)
        if match:
            done = (match.group(1) or "").lower() == "x"
            entries.append(
                plan_entry(match.group(2).strip()[:200], status="completed" if done else "pending")
            )
    return entries if len(entries) >= 2 else None
