"""`glm-lsp export`: a workspace's preserved-thinking log as fine-tuning JSONL (stdout or --out)."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path
from typing import TextIO

from glm_lsp.config import Settings
from glm_lsp.errors import EXIT_OK, UsageError
from glm_lsp.memory.thinking_log import LOG_FILE
from glm_lsp.traces.export import ExportOptions, ExportReport, export_lines, parse_since


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workspace")
    parser.add_argument("--out", help="JSONL file to write (default: stdout)")
    parser.add_argument(
        "--format",
        choices=("chat", "completions"),
        default="chat",
        help="chat: {messages, tools} per completion; completions: rendered {prompt, completion}",
    )
    parser.add_argument(
        "--only-applied", action="store_true", help="only requests whose edit was applied"
    )
    parser.add_argument(
        "--rejected",
        choices=("keep", "drop"),
        default="keep",
        help="requests whose reviewed edit the user rejected (in part): keep them, each line "
        "labelled with `rejected: [{path, kind, hunks?}]` (default), or drop them",
    )
    parser.add_argument("--since", help="only requests at or after this ISO date (UTC)")
    parser.add_argument(
        "--redact-results", action="store_true", help="replace every tool result with a placeholder"
    )
    parser.add_argument("--state-dir", help="where the log is (default <workspace>/.glm-lsp)")
    parser.add_argument(
        "--api-key-env",
        default=Settings().apiKeyEnv,
        help="environment variable whose value is redacted wherever it appears",
    )
    parser.add_argument(
        "--preserve-thinking",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the preserveThinking setting the sessions ran with (default on)",
    )
    parser.add_argument(
        "--include-compacted",
        action="store_true",
        help="also export earlier completions of compacted requests (context not byte-exact)",
    )
    parser.add_argument(
        "--include-archived",
        action="store_true",
        help="also export logs archived by glm.thinking.reset, each as its own conversation",
    )


def export_command(args: argparse.Namespace) -> int:
    root = Path(args.workspace).expanduser()
    if not root.is_dir():
        raise UsageError(f"workspace {args.workspace} is not a directory")
    root = root.resolve()
    state_dir = Settings(stateDir=args.state_dir).state_dir(root)
    log = state_dir / LOG_FILE
    if not log.exists() and not (args.include_archived and any(state_dir.glob("thinking-*.jsonl"))):
        raise UsageError(
            f"no preserved-thinking log at {log}; run requests in this workspace first, "
            "or pass --state-dir if the log lives elsewhere"
        )
    since = None
    if args.since:
        try:
            since = parse_since(args.since)
        except ValueError:
            raise UsageError(
                f"--since {args.since!r} is not an ISO date; give e.g. 2025-01-31 or "
                "2025-01-31T09:00"
            ) from None
    options = ExportOptions(
        format=args.format,
        only_applied=args.only_applied,
        rejected=args.rejected,
        since=since,
        redact_results=args.redact_results,
        api_key_env=args.api_key_env,
        preserve_thinking=args.preserve_thinking,
        include_compacted=args.include_compacted,
        include_archived=args.include_archived,
    )
    report = ExportReport()
    try:
        out = _private_file(args.out) if args.out else sys.stdout
    except OSError as exc:
        raise UsageError(f"cannot write --out {args.out}: {exc.strerror}") from None
    try:
        for line in export_lines(root, state_dir, options, report):
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    for warning in report.warnings:
        print(f"glm-lsp: warning: {warning}", file=sys.stderr)
    print(_summary(report, options, args.out), file=sys.stderr)
    return EXIT_OK


def _private_file(path: str) -> TextIO:
    """--out for writing, readable by the owner only: traces hold code, paths and prompts that
    redaction cannot fully judge. An existing file is tightened too, before it is rewritten."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # not /dev/stdout or a pipe
            os.fchmod(fd, 0o600)
        return open(fd, "w", encoding="utf-8")  # the caller closes it
    except BaseException:
        os.close(fd)
        raise


def _summary(report: ExportReport, options: ExportOptions, out: str | None) -> str:
    text = (
        f"exported {report.lines} {options.format} record(s) from {report.requests} of "
        f"{report.logged} logged request(s) to {out or 'stdout'}"
    )
    if report.skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
        text += f"; skipped completions the log cannot reproduce exactly: {reasons}"
    if report.redacted:
        text += f"; redacted {report.redacted} string(s)"
    return text
