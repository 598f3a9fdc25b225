"""`glm-lsp run`: one agent request without an editor.

Reasoning streams to stderr as it is produced; the answer and the unified diff go to stdout.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
from pathlib import Path

from glm_lsp import textfile
from glm_lsp.agent.edits import ChangeSet
from glm_lsp.agent.landing import ApplyReport
from glm_lsp.agent.prompts import AgentRequest
from glm_lsp.agent.session import Session
from glm_lsp.commands.review import review
from glm_lsp.config import Settings
from glm_lsp.core.disk_apply import remember_edit, write_to_disk
from glm_lsp.runtime.base import Cancelled
from glm_lsp.runtime.factory import make_backend
from glm_lsp.workspace import format_outline

SENSITIVE_NOTE = "sensitive: runs code on its own"


class StderrStream:
    """Streams reasoning (dimmed on a terminal) and tool activity to stderr."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.kind = ""
        self.shown = ""  # the last waiting line shown

    def progress(self, text: str) -> None:
        """Waits get a line (the host loading the model, another client's turn); a percentage
        is shown in steps of ten, so a log is not flooded."""
        if not text.startswith(("loading", "waiting")):
            return
        match = re.search(r"\((\d+)%\)$", text)
        key = re.sub(r"\(\d+%\)$", f"({int(match[1]) // 10 * 10}%)", text) if match else text
        if key == self.shown:
            return
        self.shown = key
        if self.kind:
            sys.stderr.write("\n")
        sys.stderr.write(f"glm-lsp: {text}\n")
        sys.stderr.flush()
        self.kind = ""

    def __call__(self, kind: str, text: str) -> None:
        if kind == "progress":
            self.progress(text)
            return
        if kind == "tool_output":  # a command's output, as it comes
            if self.kind != "tool_output_raw":
                sys.stderr.write("\n")
            sys.stderr.write(text)
            sys.stderr.flush()
            self.kind = "tool_output_raw"
            return
        if kind != self.kind and self.kind:
            sys.stderr.write("\n")
        if kind == "reasoning" and self.tty:
            text = f"\x1b[2m{text}\x1b[0m"
        elif kind == "tool_call":
            text = f"→ {text}"
        elif kind == "tool_result" and self.kind == "tool_output_raw":
            text = text.lstrip("\n")  # the exit code line after a command's streamed output
        elif kind == "tool_result":
            first = text.splitlines()[0] if text else ""
            text = f"  ← {first[:200]}" + (" …" if len(text) > len(first) else "")
        sys.stderr.write(text)
        sys.stderr.flush()
        self.kind = kind


def ask_on_terminal(command: str, _first: str) -> str | None:
    """y/N on the terminal; None (nobody to ask) when stdin is not one."""
    if not sys.stdin.isatty():
        return None
    sys.stderr.write(f"\nglm-lsp: the model wants to run: {command}\nAllow it? [y/N] ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline().strip().lower()
    except (OSError, ValueError):
        return None
    return "once" if answer in ("y", "yes") else "deny"


def prompt_on_terminal(message: str, always: str | None) -> str | None:
    """An MCP tool call or a .mcp.json: y (once), a (always), N; None when stdin is no terminal."""
    if not sys.stdin.isatty():
        return None
    choices = "[y/a/N] (a: " + always + ")" if always else "[y/N]"
    sys.stderr.write(f"\nglm-lsp: {message}\nAllow it? {choices} ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline().strip().lower()
    except (OSError, ValueError):
        return None
    if answer in ("a", "always") and always:
        return "always"
    return "once" if answer in ("y", "yes") else "deny"


def build_request(args: argparse.Namespace, root: Path) -> AgentRequest:
    request = AgentRequest(kind=args.kind, instruction=args.instruction)
    if args.file:
        from glm_lsp.errors import UsageError

        path = (root / args.file).resolve()
        if not path.is_file() or root not in path.parents:
            raise UsageError(f"--file {args.file} is not a file inside {root}")
        request.path = path.relative_to(root).as_posix()
        text = textfile.read_view(path)
        if text is None:
            raise UsageError(f"--file {args.file} is not a text file")
        if args.lines:
            try:
                start, _, end = args.lines.partition("-")
                request.start_line, request.end_line = int(start), int(end or start)
            except ValueError:
                raise UsageError(f"--lines {args.lines} is not a range like 10-24") from None
            lines = text.splitlines(keepends=True)
            request.selection = "".join(lines[request.start_line - 1 : request.end_line])
    return request


def _ask(prompt: str) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    return line if line else "q"  # end of input: leave the rest


def _show(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    from glm_lsp.errors import EXIT_BACKEND, EXIT_OK, UsageError

    root = Path(args.workspace).resolve()
    if not root.is_dir():
        raise UsageError(f"workspace {args.workspace} is not a directory")
    interactive = bool(getattr(args, "interactive_review", False))
    if interactive and not args.apply:
        raise UsageError("--review reviews what --apply writes; give both")
    if interactive and not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError("--review asks on a terminal; stdin and stderr are not one")
    if getattr(args, "allow_mcp_json", False):
        from glm_lsp.commands.mcp import approve

        print(f"glm-lsp: {approve(root)}", file=sys.stderr)
    backend = make_backend(settings, settings.state_dir(root), client="run")
    session = Session(root, settings, backend)
    request = build_request(args, root)
    if request.path:
        request.outline = format_outline(session.index.outline(request.path))

    turn = 0  # numbered once the request holds the conversation (another run may be ahead)
    label = f"glm-lsp run: {args.instruction}"[:120]

    def apply(changes: ChangeSet) -> ApplyReport:
        if not args.apply:
            return ApplyReport(False, "not applied: run again with --apply to write it")
        reviewed = None
        if interactive:
            reviewed = review(changes, _ask, _show)
            if not reviewed.accepted:
                remember(ChangeSet(), reviewed.remainder)
                return ApplyReport(
                    False, "you rejected every change", reviewed.landings, ChangeSet()
                )
        taken = reviewed.accepted if reviewed else changes
        applied, reason = write(taken)
        if not applied:
            return ApplyReport(False, reason)
        if reviewed is None:
            remember(changes, ChangeSet())
            return ApplyReport(True)
        remember(taken, reviewed.remainder)
        return ApplyReport(True, None, reviewed.landings, taken, reviewed.remainder)

    def remember(landed: ChangeSet, remainder: ChangeSet) -> None:
        remember_edit(session.root, landed, remainder, label, turn)

    def write(changes: ChangeSet) -> tuple[bool, str | None]:
        return write_to_disk(root, session.state_dir, changes, allow_sensitive=args.allow_sensitive)

    def numbered(taken: int) -> None:
        nonlocal turn
        turn = taken

    cancel = threading.Event()
    try:
        outcome = session.run(
            request,
            StderrStream(),
            cancel,
            apply,
            ask_on_terminal,
            prompt_on_terminal,
            on_turn=numbered,
        )
    except (KeyboardInterrupt, Cancelled):
        cancel.set()
        print("\nglm-lsp: cancelled; nothing was written", file=sys.stderr)
        return 130
    finally:
        session.close()  # the shadow workspace goes with the request
    sys.stderr.write("\n")
    result = outcome.result
    if result.text:
        print(result.text)
    diff = result.changes.diff()
    if diff:
        print()
        sys.stdout.write(diff)
    if result.verification is not None:
        v = result.verification
        code = "not run" if v.exit_code is None else f"exit code {v.exit_code}"
        print(f"\nverification: {v.command}: {code}: {v.summary}")
    s = result.stats
    print(
        f"turn {outcome.turn}: {s.promptTokens} prompt tokens ({s.reusedTokens} reused, "
        f"{s.prefilledTokens} prefilled), {s.generatedTokens} generated, {s.decodeTps} tok/s"
        + (f", drafts {s.draftAcceptedTokens}/{s.draftTokens} accepted" if s.draftTokens else ""),
        file=sys.stderr,
    )
    for path in result.changes.sensitive():
        print(f"{SENSITIVE_NOTE}: {path}", file=sys.stderr)
    if result.changes:
        status = "applied" if outcome.applied else outcome.failure_reason
        print(f"edit: {len(result.changes.changes)} file(s), {status}", file=sys.stderr)
        for got in outcome.landings or []:  # after --review: what the user took
            taken = f"{got.hunks[0]} of {got.hunks[1]} hunks" if got.hunks else ""
            state = taken or ("taken" if got.applied else "left")
            print(f"  {got.path}: {state}", file=sys.stderr)
    if result.stopped:
        print(f"note: {result.stopped}", file=sys.stderr)
    if args.apply and result.changes and not outcome.applied:
        # The sentence above says why; the exit code tells a script nothing was written.
        return EXIT_BACKEND
    return EXIT_OK
