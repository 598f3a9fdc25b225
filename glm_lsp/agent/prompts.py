"""The system prompt (constant, so the KV prefix is shared by every request) and user messages."""

from __future__ import annotations

from dataclasses import dataclass, field

from glm_lsp.agent.instruction_comments import InstructionComment

SYSTEM_PROMPT = (
    "You are GLM, a coding agent working inside the user's editor on one workspace. "
    "Use the tools to look at the code before you answer or change it; paths are relative to the "
    "workspace root. Edits you make are collected and shown to the user as one reviewed change, "
    "so make every edit the request needs (including other files that must follow), then answer "
    "with a short summary of what you did and why. When the project has tests, run the relevant "
    "ones with run_command before changing code (to see the failure) and again after your edits "
    "(they see your pending edits); read a failure before editing again. "
    "For explanations and questions, answer "
    "directly and concisely; do not edit files unless asked."
)

KINDS = ("explain", "refactor", "fix", "ask", "prompt")
# The log's `command`: the LSP command, or the ACP method for an agent-panel message.
COMMANDS = {kind: f"glm.{kind}" for kind in KINDS} | {"prompt": "session/prompt"}


@dataclass
class AgentRequest:
    kind: str  # explain | refactor | fix | ask | prompt (a message typed in an ACP agent panel)
    instruction: str = ""  # refactor instruction or question
    path: str | None = None  # workspace-relative file
    start_line: int | None = None  # 1-based inclusive selection
    end_line: int | None = None
    selection: str = ""
    symbol: str | None = None  # "function foo" when the range was widened to a symbol
    outline: str = ""
    diagnostics: list[str] = field(default_factory=list)
    thinking: str | None = None  # per-request override: enabled | disabled | auto
    changed: list[str] = field(default_factory=list)  # "modified src/a.py" since last request
    stale: list[str] = field(default_factory=list)  # files read earlier that changed since
    rejected: list[str] = field(default_factory=list)  # "the user rejected the change to a.py"
    notes: list[str] = field(default_factory=list)  # MCP servers that could not start, ...
    # The `GLM:` comment in `path` that the instruction came from: the edit removes it.
    instruction_comment: InstructionComment | None = None


_VERBS = {
    "explain": "Explain the code below: what it does, how, and anything surprising.",
    "refactor": "Refactor as instructed, across every file that needs it.",
    "fix": "Fix the problems reported by the diagnostics below.",
    "ask": "Answer the question.",
    "prompt": "Do what the user's message asks: answer it, or change the code where it asks.",
}


def user_message(req: AgentRequest) -> str:
    parts = [f"Request: {req.kind}. {_VERBS[req.kind]}"]
    if req.instruction:
        label = {"ask": "Question", "explain": "Question", "prompt": "Message"}.get(
            req.kind, "Instruction"
        )
        parts.append(f"{label}: {req.instruction}")
    if req.path:
        where = f"File: {req.path}"
        if req.start_line:
            where += f" (lines {req.start_line}-{req.end_line or req.start_line})"
        if req.symbol:
            where += f", {req.symbol}"
        parts.append(where)
    if req.selection:
        parts.append(f"Selected text:\n```\n{req.selection.rstrip()}\n```")
    if req.outline:
        parts.append(f"Outline of {req.path}:\n{req.outline.rstrip()}")
    if req.diagnostics:
        parts.append("Diagnostics:\n" + "\n".join(f"- {d}" for d in req.diagnostics))
    if req.changed:
        parts.append(
            "Changed in the workspace since the previous request:\n"
            + "\n".join(f"- {c}" for c in req.changed)
        )
    if req.rejected:
        parts.append(
            "You proposed changes in the previous request; "
            + "; ".join(req.rejected)
            + ". Those parts never landed: do not build on them."
        )
    if req.stale:
        parts.append(
            "Files you read in earlier requests that changed since (re-read before editing): "
            + ", ".join(req.stale)
        )
    if req.notes:
        parts.append("Notes:\n" + "\n".join(f"- {n}" for n in req.notes))
    return "\n\n".join(parts)


def resolve_thinking(setting: str, override: str | None, kind: str) -> bool:
    """Turn-level thinking: auto = off for explain/ask, on for refactor/fix and agent-panel
    messages (they may ask for edits)."""
    choice = override if override and override != "auto" else setting
    if choice == "enabled":
        return True
    if choice == "disabled":
        return False
    return kind in ("refactor", "fix", "prompt")
