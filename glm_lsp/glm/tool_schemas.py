"""The model-facing tools (the README's Model tools) as OpenAI-style function schemas.

The list is the same for every request so that the rendered prompt prefix never changes.
"""

from __future__ import annotations

from typing import Any


def _tool(name: str, description: str, required: list[str], **props: dict[str, Any]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": props, "required": required},
        },
    }


def _s(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _i(description: str) -> dict[str, Any]:
    return {"type": "integer", "description": description}


_PATH = _s("Path relative to the workspace root.")

TOOLS: list[dict] = [
    _tool(
        "read_file",
        "Read a text file of the workspace, optionally a 1-based inclusive line range.",
        ["path"],
        path=_PATH,
        start_line=_i("First line to read (1-based)."),
        end_line=_i("Last line to read (inclusive)."),
    ),
    _tool(
        "list_files",
        "List files recursively (workspace-relative paths; .gitignore is respected).",
        [],
        path=_s("Directory to list, relative to the workspace root (default: the root)."),
        glob=_s("Only paths matching this glob, e.g. '*.py' or 'src/**/*.ts'."),
    ),
    _tool(
        "search",
        "Search file contents; matches come back as 'path:line: text'.",
        ["pattern"],
        pattern=_s("Text to find (a regular expression when regex is true)."),
        path=_s("Directory or file to search in (default: the whole workspace)."),
        regex={"type": "boolean", "description": "Treat pattern as a regular expression."},
    ),
    _tool(
        "outline",
        "Functions, classes and methods of a file with their line ranges.",
        ["path"],
        path=_PATH,
    ),
    _tool(
        "edit_file",
        "Replace old_text with new_text in a file; old_text must occur exactly once.",
        ["path", "old_text", "new_text"],
        path=_PATH,
        old_text=_s("The exact text to replace, including indentation."),
        new_text=_s("The replacement text."),
    ),
    _tool(
        "write_file",
        "Create a file or overwrite it with the given content.",
        ["path", "content"],
        path=_PATH,
        content=_s("The whole new content of the file."),
    ),
    _tool(
        "rename_file",
        "Rename or move a file inside the workspace.",
        ["path", "new_path"],
        path=_PATH,
        new_path=_s("The new path, relative to the workspace root."),
    ),
    _tool("delete_file", "Delete a file of the workspace.", ["path"], path=_PATH),
    _tool(
        "run_command",
        "Run a shell command line (/bin/sh -c) at the workspace root, e.g. the project's tests, "
        "and get 'exit code N' and its output. It sees your pending edits in a private copy of "
        "the workspace (nothing it writes reaches the user's files); network is off. Run the "
        "relevant tests before and after changing code; the user may have to allow a command.",
        ["command"],
        command=_s("The command line, e.g. 'pytest -q tests/test_a.py'."),
        timeout=_i("Seconds before the command is killed (at most the user's limit)."),
    ),
]
