"""`glm-lsp mcp show|approve|revoke WORKSPACE`: look at, trust, or stop trusting a workspace's
`.mcp.json` as it is now (it starts programs, so glm-lsp uses it only after this,
`run --allow-mcp-json` or the editor's prompt). Both show everything the approval covers."""

from __future__ import annotations

import argparse
from pathlib import Path

from glm_lsp.errors import EXIT_OK, UsageError
from glm_lsp.mcp.approval import Approvals
from glm_lsp.mcp.config import PROJECT_FILE, McpConfigError, ProjectFile, read_project_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("show", "approve", "revoke"),
        help="show: what the file would start and send; approve: trust it as it is now",
    )
    parser.add_argument("workspace")


def _project(root: Path) -> ProjectFile:
    try:
        project = read_project_file(root)
    except McpConfigError as exc:
        raise UsageError(f"{exc}; fix it, then approve it again") from None
    if project is None:
        raise UsageError(f"{root / PROJECT_FILE} does not exist; there is nothing to approve")
    return project


def _listing(project: ProjectFile) -> str:
    lines = project.disclosure() or ["no servers"]
    return "\n".join(f"  {line}" for line in lines)


def show(root: Path) -> str:
    """What root/.mcp.json starts and sends, as written, and whether it is approved."""
    project = _project(root)
    approved = Approvals().approved(root, project.digest)
    state = "approved" if approved else f"not approved (glm-lsp mcp approve {root})"
    return (
        f"{project.path}: {state}. Its servers run as you, outside the sandbox, with exactly "
        f"this (${{VAR}} is filled from your environment):\n{_listing(project)}"
    )


def approve(root: Path) -> str:
    """Records the approval of root/.mcp.json's servers as they are now; the text to print."""
    project = _project(root)
    Approvals().approve(root, project.digest)
    return (
        f"approved {project.path}: its servers run as you, outside the sandbox, with exactly "
        f"this (${{VAR}} is filled from your environment):\n{_listing(project)}\n"
        "a change to any of it needs a new approval"
    )


def mcp_command(args: argparse.Namespace) -> int:
    root = Path(args.workspace).resolve()
    if not root.is_dir():
        raise UsageError(f"workspace {args.workspace} is not a directory")
    if args.action == "show":
        print(show(root))
    elif args.action == "approve":
        print(approve(root))
    elif Approvals().revoke(root):
        print(f"revoked the approval of {root / PROJECT_FILE}")
    else:
        print(f"{root / PROJECT_FILE} was not approved")
    return EXIT_OK
