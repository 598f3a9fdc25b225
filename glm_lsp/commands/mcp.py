"""`glm-lsp mcp approve|revoke WORKSPACE`: trust a workspace's `.mcp.json` as it is now (it starts
programs, so glm-lsp uses it only after this, `run --allow-mcp-json` or the editor's prompt)."""

from __future__ import annotations

import argparse
from pathlib import Path

from glm_lsp.errors import EXIT_OK, UsageError
from glm_lsp.mcp.approval import Approvals
from glm_lsp.mcp.config import PROJECT_FILE, McpConfigError, read_project_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("approve", "revoke"))
    parser.add_argument("workspace")


def approve(root: Path) -> str:
    """Records the approval of root/.mcp.json's current content; the line to print."""
    try:
        project = read_project_file(root)
    except McpConfigError as exc:
        raise UsageError(f"{exc}; fix it, then approve it again") from None
    if project is None:
        raise UsageError(f"{root / PROJECT_FILE} does not exist; there is nothing to approve")
    Approvals().approve(root, project.digest)
    names = ", ".join(f"{s.name} ({s.describe()})" for s in project.servers) or "no servers"
    return f"approved {project.path}: {names}; an edit to the file needs a new approval"


def mcp_command(args: argparse.Namespace) -> int:
    root = Path(args.workspace).resolve()
    if not root.is_dir():
        raise UsageError(f"workspace {args.workspace} is not a directory")
    if args.action == "approve":
        print(approve(root))
    elif Approvals().revoke(root):
        print(f"revoked the approval of {root / PROJECT_FILE}")
    else:
        print(f"{root / PROJECT_FILE} was not approved")
    return EXIT_OK
