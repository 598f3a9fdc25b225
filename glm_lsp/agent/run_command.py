"""run_command and verifyCommand: a permitted command line, in the shadow workspace holding the
request's pending edits, inside the OS sandbox (unless glm.sandbox is "off")."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glm_lsp.agent.edits import Overlay
from glm_lsp.agent.files import ToolError
from glm_lsp.config import Settings
from glm_lsp.glm.tool_text import error, reason
from glm_lsp.sandbox.bwrap import Jail, Unavailable, wrap
from glm_lsp.sandbox.permissions import Ask, Permissions, first_word
from glm_lsp.sandbox.process import Finished, run_process
from glm_lsp.sandbox.shadow import Shadow
from glm_lsp.wire.converter import converter
from glm_lsp.wire.records import Verification as VerificationShape

Sink = Callable[[str, str], None]
# run_process's signature: (argv, cwd, env, timeout, cancel, on_output) -> Finished. A front-end
# may run the (sandboxed) command line elsewhere, e.g. in an ACP client's terminal.
Runner = Callable[..., Finished]


class Streamed(str):
    """A tool result whose output already went to the editor as it came; `rest` has not."""

    rest: str

    def __new__(cls, text: str, rest: str) -> Streamed:
        obj = super().__new__(cls, text)
        obj.rest = rest
        return obj


@dataclass
class Verification:
    command: str
    exit_code: int | None  # None: it could not run (no sandbox)
    summary: str
    output: str

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def wire(self) -> VerificationShape:
        return VerificationShape(self.command, self.exit_code, self.summary)

    def to_dict(self) -> dict[str, Any]:
        return converter.unstructure(self.wire())


def summary_of(done: Finished, timeout: int) -> str:
    """The line a person reads first: pytest's and most runners' last line is their verdict."""
    if done.timed_out:
        return f"killed after the {timeout} s timeout"
    lines = [line.strip(" =\t") for line in done.output.splitlines() if line.strip(" =\t")]
    last = lines[-1] if lines else ("passed" if done.exit_code == 0 else "no output")
    return last if len(last) <= 200 else last[:199] + "…"


def _clean_env(settings: Settings) -> dict[str, str]:
    """The daemon's environment minus its secrets: a command must not read the API key."""
    hidden = {settings.apiKeyEnv, "GLM_LSP_TOKEN"}
    return {k: v for k, v in os.environ.items() if k not in hidden}


class CommandTool:
    def __init__(
        self,
        root: Path,
        settings: Settings,
        state_dir: Path,
        shadow: Callable[[], Shadow],
        sink: Sink,
        cancel: threading.Event,
        ask: Ask | None,
        runner: Runner | None = None,
    ) -> None:
        self.root, self.settings, self.shadow = root, settings, shadow
        self.sink, self.cancel, self.ask = sink, cancel, ask
        self.runner: Runner = runner or run_process
        self.permissions = Permissions(root, settings.allowCommands)

    def run(self, command: str, timeout: int | None, overlay: Overlay) -> str:
        if not isinstance(command, str) or not command.strip():
            raise ToolError("command is empty; give a shell command line such as 'pytest -q'")
        limit = self.settings.commandTimeout
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
                raise ToolError(f"timeout must be a number of seconds > 0, not {timeout!r}")
            limit = min(int(timeout) or 1, limit)  # never past the user's commandTimeout
        refused = self.permissions.check(command, self.ask)
        if refused is not None:
            return refused
        done = self._execute(command, limit, overlay)
        if isinstance(done, str):
            return done
        head = f"exit code {done.exit_code}"
        if done.timed_out:
            head += f"\n[killed: still running after the {limit} s timeout]"
        return Streamed(f"{head}\n{done.output}", f"\n{head}")

    def verify(self, overlay: Overlay) -> Verification | None:
        """verifyCommand against the pending edits; allowed by being configured."""
        command = self.settings.verifyCommand
        if not command:
            return None
        self.sink("tool_call", f"verifyCommand: {command}")
        timeout = self.settings.commandTimeout
        done = self._execute(command, timeout, overlay)
        if isinstance(done, str):
            self.sink("tool_result", done)
            return Verification(command, None, reason(done), done)
        self.sink("tool_result", f"\nexit code {done.exit_code}")
        return Verification(command, done.exit_code, summary_of(done, timeout), done.output)

    def _execute(self, command: str, timeout: int, overlay: Overlay) -> Finished | str:
        self.sink("progress", f"running {first_word(command)}…")
        shadow = self.shadow()
        shadow.refresh()
        shadow.sync(overlay)
        temp = Path(tempfile.mkdtemp(prefix="glm-lsp-cmd-"))
        try:
            env = _clean_env(self.settings) | {"TMPDIR": str(temp)}
            if self.settings.sandbox == "off":
                shadow.show_exposed("link")
                prefix, cwd = [], shadow.dir
                env["PWD"] = str(cwd)
            else:
                jail = Jail(shadow.dir, self.root, shadow.exposed, temp, self.settings.allowNetwork)
                try:
                    prefix, cwd = wrap(jail)
                except Unavailable as exc:
                    return error(f"not run: {exc}")
                shadow.show_exposed("mount")
                env["PWD"] = str(self.root)
            return self.runner(
                [*prefix, "/bin/sh", "-c", command],
                cwd,
                env,
                timeout,
                self.cancel,
                lambda text: self.sink("tool_output", text),
            )
        finally:
            shutil.rmtree(temp, ignore_errors=True)
