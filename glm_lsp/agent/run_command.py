"""run_command and verifyCommand: a permitted command line, in the shadow workspace holding the
request's pending edits, inside the OS sandbox (unless glm.sandbox is "off")."""

from __future__ import annotations

import os
import shutil
import sys
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
from glm_lsp.sandbox.bwrap import Jail, Unavailable, kept_under_tmp, wrap
from glm_lsp.sandbox.limits import SHADOW_BYTES, TMP_BYTES, ProcessCap, nproc_prefix
from glm_lsp.sandbox.permissions import Ask, Permissions, first_word
from glm_lsp.sandbox.process import Finished, run_process
from glm_lsp.sandbox.secrets import command_env, hidden_paths
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


def _environment(settings: Settings) -> tuple[dict[str, str], list[str]]:
    """An allowlist of the daemon's environment plus commandEnv; never the API key, the TCP
    token, nor a name that looks like a secret. Also the commandEnv names refused."""
    never = {settings.apiKeyEnv, "GLM_LSP_TOKEN"}
    return command_env(os.environ, settings.commandEnv, never)


def _refused_note(names: list[str]) -> str:
    listed = ", ".join(names)
    return (
        f"[commandEnv lists {listed}, which commands never get: names that look like secrets "
        "(*KEY*, *TOKEN*, *SECRET*, *PASSWORD*, AWS_*, ...) never pass; give the command what "
        "it needs in a file of the workspace instead]"
    )


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
        self.notes: list[str] = []  # what the last command ran into: limits, refused variables
        self.told_refused = False

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
        for note in self.notes:
            head += f"\n{note}"
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
        summary = summary_of(done, timeout)
        output = "\n".join([*self.notes, done.output]) if self.notes else done.output
        return Verification(command, done.exit_code, summary, output)

    def _execute(self, command: str, timeout: int, overlay: Overlay) -> Finished | str:
        self.sink("progress", f"running {first_word(command)}…")
        self.notes = []
        shadow = self.shadow()
        shadow.refresh()
        shadow.sync(overlay)
        env, refused = _environment(self.settings)
        if refused and not self.told_refused:  # once per request
            self.notes.append(_refused_note(refused))
            self.told_refused = True
        cap = ProcessCap.make()
        temp = Path(tempfile.mkdtemp(prefix="glm-lsp-cmd-"))
        try:
            env["TMPDIR"] = str(temp)
            if self.settings.sandbox == "off":
                shadow.show_exposed("link")
                prefix, cwd = [], shadow.dir
                env["PWD"] = str(cwd)
            else:
                jail = Jail(
                    shadow.dir,
                    self.root,
                    shadow.exposed,
                    temp,
                    self.settings.allowNetwork,
                    hidden=tuple(hidden_paths(os.environ, self._hide())),
                    keep=kept_under_tmp(self.root, _interpreters()),
                    tmp_bytes=TMP_BYTES,
                )
                try:
                    prefix, cwd = wrap(jail)
                except Unavailable as exc:
                    return error(f"not run: {exc}")
                shadow.show_exposed("mount")
                env["PWD"] = str(self.root)
            limiter = cap.prefix() if cap is not None else nproc_prefix()
            done = self.runner(
                [*limiter, *prefix, "/bin/sh", "-c", command],
                cwd,
                env,
                timeout,
                self.cancel,
                lambda text: self.sink("tool_output", text),
            )
        finally:
            capped_at = cap.limit if cap is not None and cap.hit() else None
            if cap is not None:
                cap.close()  # nothing the command started outlives it
            shutil.rmtree(temp, ignore_errors=True)
        if capped_at is not None:
            self.notes.append(
                f"[limit: the command tried to run more than {capped_at} processes at once; "
                "the forks past that failed]"
            )
        self.notes += self._limits_hit(done, shadow)
        return done

    def _hide(self) -> list[str]:
        """sandboxHide and glm-lsp's own state (conversation log, permissions, KV cache)."""
        return [*self.settings.sandboxHide, str(self.settings.state_dir(self.root))]

    def _limits_hit(self, done: Finished, shadow: Shadow) -> list[str]:
        notes = []
        if self.settings.sandbox != "off" and "No space left on device" in done.output:
            notes.append(
                f"[limit: if that was /tmp: the sandbox's private /tmp holds at most "
                f"{TMP_BYTES >> 20} MiB; write large files in the workspace instead]"
            )
        used = shadow.disk_usage()
        if used > SHADOW_BYTES:
            shadow.clear()
            notes.append(
                f"[limit: the command left {used >> 20} MiB in the shadow workspace, over "
                f"{SHADOW_BYTES >> 20} MiB; what it wrote there was removed]"
            )
        return notes


def _interpreters() -> list[str]:
    """Where the Python running glm-lsp lives (and the active venv): commands may call it."""
    found = [sys.prefix, sys.base_prefix, os.path.dirname(sys.executable)]
    venv = os.environ.get("VIRTUAL_ENV")
    return [*found, venv] if venv else found
