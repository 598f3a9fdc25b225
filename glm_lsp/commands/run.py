"""`glm-lsp run`: one agent request without an editor.

Reasoning streams to stderr as it is produced; the answer and the unified diff go to stdout.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from glm_lsp.agent.edits import ChangeSet, apply_to_disk, check_unchanged
from glm_lsp.agent.files import ToolError
from glm_lsp.agent.prompts import AgentRequest
from glm_lsp.agent.session import Session
from glm_lsp.config import Settings
from glm_lsp.runtime.base import Cancelled
from glm_lsp.runtime.factory import make_backend
from glm_lsp.workspace import format_outline


class StderrStream:
    """Streams reasoning (dimmed on a terminal) and tool activity to stderr."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.kind = ""

    def __call__(self, kind: str, text: str) -> None:
        if kind == "progress":
            return
        if kind != self.kind and self.kind:
            sys.stderr.write("\n")
        if kind == "reasoning" and self.tty:
            text = f"\x1b[2m{text}\x1b[0m"
        elif kind == "tool_call":
            text = f"→ {text}"
        elif kind == "tool_result":
            first = text.splitlines()[0] if text else ""
            text = f"  ← {first[:200]}" + (" …" if len(text) > len(first) else "")
        sys.stderr.write(text)
        sys.stderr.flush()
        self.kind = kind


def build_request(args: argparse.Namespace, root: Path) -> AgentRequest:
    request = AgentRequest(kind=args.kind, instruction=args.instruction)
    if args.file:
        from glm_lsp.errors import UsageError

        path = (root / args.file).resolve()
        if not path.is_file() or root not in path.parents:
            raise UsageError(f"--file {args.file} is not a file inside {root}")
        request.path = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        if args.lines:
            try:
                start, _, end = args.lines.partition("-")
                request.start_line, request.end_line = int(start), int(end or start)
            except ValueError:
                raise UsageError(f"--lines {args.lines} is not a range like 10-24") from None
            lines = text.splitlines(keepends=True)
            request.selection = "".join(lines[request.start_line - 1 : request.end_line])
    return request


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    from glm_lsp.errors import EXIT_OK, UsageError

    root = Path(args.workspace).resolve()
    if not root.is_dir():
        raise UsageError(f"workspace {args.workspace} is not a directory")
    backend = make_backend(settings, settings.state_dir(root))
    session = Session(root, settings, backend)
    request = build_request(args, root)
    if request.path:
        request.outline = format_outline(session.index.outline(request.path))

    def apply(changes: ChangeSet) -> tuple[bool, str | None]:
        if not args.apply:
            return False, "not applied: run again with --apply to write it"
        stale = check_unchanged(root, changes)
        if stale:
            return (
                False,
                f"not applied: changed on disk since the agent read them: {', '.join(stale)}",
            )
        try:
            apply_to_disk(root, changes, session.state_dir)
        except ToolError as exc:  # a path would now land outside the workspace: write nothing
            return False, str(exc)
        return True, None

    cancel = threading.Event()
    try:
        outcome = session.run(request, StderrStream(), cancel, apply)
    except (KeyboardInterrupt, Cancelled):
        cancel.set()
        print("\nglm-lsp: cancelled; nothing was written", file=sys.stderr)
        return 130
    sys.stderr.write("\n")
    result = outcome.result
    if result.text:
        print(result.text)
    diff = result.changes.diff()
    if diff:
        print()
        sys.stdout.write(diff)
    s = result.stats
    print(
        f"turn {outcome.turn}: {s.promptTokens} prompt tokens ({s.reusedTokens} reused, "
        f"{s.prefilledTokens} prefilled), {s.generatedTokens} generated, {s.decodeTps} tok/s"
        + (f", drafts {s.draftAcceptedTokens}/{s.draftTokens} accepted" if s.draftTokens else ""),
        file=sys.stderr,
    )
    if result.changes:
        status = "applied" if outcome.applied else outcome.failure_reason
        print(f"edit: {len(result.changes.changes)} file(s), {status}", file=sys.stderr)
    if result.stopped:
        print(f"note: {result.stopped}", file=sys.stderr)
    return EXIT_OK
