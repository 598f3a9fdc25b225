"""Which command lines run_command may run: allowCommands globs, the user's "always" answers, or a
question to the user; with nobody to ask, nothing runs. MCP tool calls follow the same policy
(ToolPermissions: mcpAllow globs on `<server>__<tool>`).

The "always" answers are the user's: kept in the user's own folder for the workspace
(state_files.workspace_state), never read from the workspace, which a repository could fill."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from glm_lsp import state_files
from glm_lsp.glm.tool_text import error

ALLOW_ONCE, ALLOW_ALWAYS, DENY = "once", "always", "deny"
# (command, first word) -> ALLOW_ONCE | ALLOW_ALWAYS | DENY; None: nobody can be asked.
Ask = Callable[[str, str], "str | None"]
# (message, label of the "always" action or None) -> ALLOW_ONCE | ALLOW_ALWAYS | DENY | None: a
# question that is not a command line (an MCP tool call, a workspace's .mcp.json).
Prompt = Callable[[str, "str | None"], "str | None"]
# An "always allow pytest …" answer never covers a line that chains or redirects into more.
SHELL_CONTROL = re.compile(r"[;&|`$<>(){}\n\\]")


def first_word(command: str) -> str:
    parts = command.split()
    return parts[0] if parts else ""


def always_label(command: str) -> str:
    return f"Always allow `{first_word(command)} …`"


class Permissions:
    def __init__(self, root: Path, patterns: Sequence[str]) -> None:
        """`root`: the workspace the answers are for."""
        self.path = state_files.workspace_state(root) / "permissions.json"
        self.patterns = tuple(patterns)

    key = "always"  # the list in permissions.json this policy remembers

    def _data(self) -> dict:
        data = state_files.read_json(self.path)
        return data if isinstance(data, dict) else {}

    def remembered(self) -> list[str]:
        words = self._data().get(self.key)
        return [w for w in words if isinstance(w, str) and w] if isinstance(words, list) else []

    def _save(self, words: list[str]) -> None:
        data = {"v": 1, **self._data(), self.key: words}  # the other policy's list stays
        state_files.write_json(self.path, data)  # private, fsynced, never through a link

    def allowed(self, command: str) -> bool:
        line = command.strip()
        if any(fnmatch.fnmatchcase(line, p) for p in self.patterns):
            return True
        word = first_word(line)
        return bool(word) and not SHELL_CONTROL.search(line) and word in self.remembered()

    def remember(self, command: str) -> None:
        words = self.remembered()
        word = first_word(command)
        if word and word not in words:
            words.append(word)
        self._save(words)

    def check(self, command: str, ask: Ask | None) -> str | None:
        """None when the command may run, else the tool result explaining why it did not."""
        if self.allowed(command):
            return None
        answer = ask(command, first_word(command)) if ask is not None else None
        if answer == ALLOW_ALWAYS:
            self.remember(command)
            return None
        if answer == ALLOW_ONCE:
            return None
        if answer == DENY:
            return error("not run: the user denied this command; do not retry it")
        example = f"{first_word(command)} *"
        return error(
            "not run: this command is not allowed and there is no one to ask. It runs "
            f"when it matches the allowCommands setting (e.g. glm.allowCommands: [{example!r}], "
            f"flag --allow-command {example!r})".replace("'", '"')
        )


class ToolPermissions(Permissions):
    """MCP tool calls: mcpAllow globs on `<server>__<tool>`, tools the server marks read-only
    when mcpAllowReadOnly is on, the user's "always" answers, or a question."""

    key = "mcpAlways"

    def __init__(self, root: Path, patterns: Sequence[str], allow_read_only: bool) -> None:
        super().__init__(root, patterns)
        self.allow_read_only = allow_read_only

    def check_tool(
        self, name: str, read_only: bool, message: str, ask: Prompt | None
    ) -> str | None:
        """None when the call may go ahead, else the tool result explaining why it did not."""
        if any(fnmatch.fnmatchcase(name, p) for p in self.patterns):
            return None
        if (read_only and self.allow_read_only) or name in self.remembered():
            return None
        answer = ask(message, f"Always allow `{name}`") if ask is not None else None
        if answer == ALLOW_ALWAYS:
            self._save([*self.remembered(), name])
            return None
        if answer == ALLOW_ONCE:
            return None
        if answer == DENY:
            return error(f"not called: the user denied this call of {name}; do not retry it")
        server = name.split("__", 1)[0]
        return error(
            f"not called: the MCP tool {name} is not allowed and there is no one to ask. "
            f'It runs when it matches the mcpAllow setting (e.g. glm.mcpAllow: ["{name}"] or '
            f'["{server}__*"], flag --mcp-allow "{server}__*")'
        )
