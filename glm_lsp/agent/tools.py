"""The model-facing tools of the README's Model tools, run against the request's overlay.

Every failure becomes a tool result starting with "Error:" so the model can correct itself; nothing
a tool does touches the disk.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from glm_lsp import textfile
from glm_lsp.agent.edits import Overlay
from glm_lsp.agent.files import ToolError, Workspace, shown
from glm_lsp.agent.run_command import CommandTool
from glm_lsp.agent.text_edit import Ambiguous, check_content, replace_once, with_style_of
from glm_lsp.glm.tool_text import MAX_CHARS, error
from glm_lsp.runtime.base import Cancelled
from glm_lsp.textfile import digest
from glm_lsp.workspace import WorkspaceIndex, format_outline
from glm_lsp.workspace.ignore import compile_glob

MAX_LINES = 2000
MAX_LIST = 1000
MAX_HITS = 199  # search: with the note saying it stopped, 200 lines


def _truncate_note(shown: str, what: str) -> str:
    return f"{shown}\n[truncated: {what}]"


class ToolBox:
    def __init__(
        self,
        workspace: Workspace,
        index: WorkspaceIndex,
        overlay: Overlay,
        commands: CommandTool | None = None,
        extra: Mapping[str, Callable[[dict[str, Any]], str]] | None = None,
    ) -> None:
        """`extra`: more tools by name, each called with the arguments as one dict (MCP tools,
        whose argument names are the server's)."""
        self.ws, self.index, self.overlay = workspace, index, overlay
        self.commands = commands
        self.extra = dict(extra or {})
        self.reads: dict[str, str | None] = {}  # path -> hash of what the model saw first
        self._tools: dict[str, Callable[..., str]] = {
            "read_file": self.read_file,
            "list_files": self.list_files,
            "search": self.search,
            "outline": self.outline,
            "edit_file": self.edit_file,
            "write_file": self.write_file,
            "rename_file": self.rename_file,
            "delete_file": self.delete_file,
            "run_command": self.run_command,
        }

    def run(self, name: str, arguments: dict[str, Any]) -> str:
        tool = self._tools.get(name)
        if tool is None and name in self.extra:
            call = self.extra[name]
            tool = lambda **kw: call(kw)  # noqa: E731
        if tool is None:
            known = ", ".join([*self._tools, *self.extra])
            return error(f"there is no tool '{name}'; the tools are: {known}")
        try:
            return tool(**arguments)
        except Cancelled:
            raise  # the request ends; a killed command is no answer for the model
        except ToolError as exc:
            return error(f"{exc}")
        except TypeError as exc:
            return error(f"bad arguments for {name}: {exc}")
        except (ValueError, OSError) as exc:
            return error(f"{name} failed: {exc}")
        except Exception as exc:  # a model must never end the request by what it asks for
            return error(f"{name} failed ({type(exc).__name__}): {shown(str(exc))}")

    # -- reading -----------------------------------------------------------------------------
    def _text(self, path: str) -> tuple[str, str]:
        """The path and the file's text as the model sees it (textfile.view)."""
        rel, text = self._native(path)
        return rel, textfile.view(text)

    def _native(self, path: str) -> tuple[str, str]:
        rel = self.ws.rel(path)
        text = self.overlay.read(rel)
        if text is None:
            raise ToolError(f"'{rel}' does not exist; list_files shows what does")
        return rel, text

    def read_file(
        self, path: str, start_line: int | None = None, end_line: int | None = None
    ) -> str:
        rel, native = self._native(path)
        if rel not in self.overlay.files:
            self.reads.setdefault(rel, digest(native))
        text = self._shown(rel, native, start_line, end_line)
        encoding = self.overlay.encoding(rel)
        if encoding is None:
            return text
        return f"[{rel} is encoded as {encoding}: shown decoded; glm-lsp does not edit it]\n" + text

    def _shown(self, rel: str, native: str, start_line: int | None, end_line: int | None) -> str:
        text = textfile.view(native)
        lines = text.splitlines(keepends=True)
        first = max(int(start_line or 1), 1)
        last = min(int(end_line or len(lines)), len(lines))
        if (
            start_line is None
            and end_line is None
            and len(lines) <= MAX_LINES
            and len(text) <= MAX_CHARS
        ):
            return text
        if first > last:
            return f"'{rel}' has {len(lines)} lines; lines {first}-{last} are empty"
        lines_shown, chars, stop = [], 0, last
        for number in range(first, last + 1):
            line = lines[number - 1]
            if number - first >= MAX_LINES or chars + len(line) > MAX_CHARS:
                stop = number - 1
                break
            lines_shown.append(line)
            chars += len(line)
        if stop < first:  # one line longer than MAX_CHARS: show its start rather than nothing
            line = lines[first - 1]
            head = (
                f"[line {first} of {len(lines)} in {rel}: first {MAX_CHARS} of {len(line)} chars]\n"
            )
            return _truncate_note(head + line[:MAX_CHARS], "the rest of this line is not shown")
        header = f"[lines {first}-{stop} of {len(lines)} in {rel}]\n"
        body = header + "".join(lines_shown)
        if stop < last:
            return _truncate_note(body, f"read lines {stop + 1}-{last} with start_line/end_line")
        return body

    def list_files(self, path: str | None = None, glob: str | None = None) -> str:
        base = None if path in (None, "", ".") else self.ws.rel(path)
        if glob is not None and not isinstance(glob, str):
            raise ToolError(f"glob must be a string like '*.py', not {shown(repr(glob))}")
        glob = glob or None
        files = set(self.index.list_files(base, glob)) - self.overlay.removed_paths()
        prefix = "" if base in (None, ".") else base.rstrip("/") + "/"
        for created in self.overlay.created_paths():
            if created.startswith(prefix) and self._glob_ok(created, prefix, glob):
                files.add(created)
        listing = sorted(files)
        if not listing:
            return "no files match"
        if len(listing) > MAX_LIST:
            first = "\n".join(listing[:MAX_LIST])
            return _truncate_note(first, f"{len(listing)} files; narrow with path or glob")
        return "\n".join(listing)

    @staticmethod
    def _glob_ok(rel: str, prefix: str, glob: str | None) -> bool:
        """The index's glob rules (WorkspaceIndex.list_files), so pending files list the same."""
        if not glob:
            return True
        match = compile_glob(glob)
        return match(rel) or bool(prefix and match(rel[len(prefix) :]))

    def search(self, pattern: str, path: str | None = None, regex: bool = False) -> str:
        base = None if path in (None, "", ".") else self.ws.rel(path)
        removed = self.overlay.removed_paths()
        hits = self.index.search(
            pattern,
            base,
            bool(regex),
            read_text=lambda rel: None if rel in removed else self._view(rel),
            extra_files=self.overlay.created_paths(),
            max_results=MAX_HITS,
        )
        lines = list(hits) or [f"no matches for {pattern!r}"]
        # The note says why the search ended early (time or hit bound), so the model narrows it.
        return "\n".join([*lines, hits.note] if hits.note else lines)

    def _view(self, rel: str) -> str | None:
        text = self.overlay.read(rel)
        return None if text is None else textfile.view(text)

    def outline(self, path: str) -> str:
        rel, text = self._text(path)
        symbols = self.index.outline(rel, text)
        return format_outline(symbols) if symbols else f"no outline for '{rel}' (no symbols found)"

    # -- writing -----------------------------------------------------------------------------
    def edit_file(self, path: str, old_text: str, new_text: str) -> str:
        rel = self.ws.rel(path, writing=True)
        text = self.overlay.read(rel)
        if text is None:
            raise ToolError(f"'{rel}' does not exist; use write_file to create it")
        self.overlay.check_editable(rel)
        if not isinstance(old_text, str) or not old_text:
            raise ToolError("old_text is empty; give the exact text to replace")
        check_content("new_text", new_text)
        found = replace_once(text, old_text, new_text)
        if found is None:
            raise ToolError(f"old_text was not found in '{rel}'. {self._nearest(text, old_text)}")
        if isinstance(found, Ambiguous):
            where = ", ".join(map(str, found.lines))
            if len(found.lines) < found.count:
                where = f"first at lines {where}, …"
            else:
                where = f"at lines {where}"
            raise ToolError(
                f"old_text occurs {found.count} times in '{rel}' ({where}); "
                "include more surrounding lines so it matches exactly once"
            )
        self.overlay.write(rel, found.text)
        line, old_n, new_n = found.line, found.old_lines, found.new_lines
        return f"edited '{rel}': lines {line}-{line + old_n - 1} ({old_n} lines) now {new_n} lines"

    @staticmethod
    def _nearest(text: str, old_text: str) -> str:
        lines = textfile.view(text).splitlines()
        wanted = next((s for s in old_text.splitlines() if s.strip()), old_text).strip()
        stripped = [s.strip() for s in lines]
        close = difflib.get_close_matches(wanted, stripped, n=3, cutoff=0.5)
        if not close:
            return "No similar lines; read the file again to see its current text."
        found = [f"{i + 1}: {lines[i]}" for i, s in enumerate(stripped) if s in close][:3]
        return "Nearest similar lines:\n" + "\n".join(found)

    def write_file(self, path: str, content: str) -> str:
        rel = self.ws.rel(path, writing=True)
        check_content("content", content)
        old = self.overlay.read(rel)
        created = self.overlay.write(rel, content if old is None else with_style_of(old, content))
        lines = content.count("\n") + (0 if content.endswith("\n") or not content else 1)
        return f"{'created' if created else 'overwrote'} '{rel}' ({lines} lines)"

    def rename_file(self, path: str, new_path: str) -> str:
        rel = self.ws.rel(path, writing=True)
        new_rel = self.ws.rel(new_path, writing=True)
        if rel == new_rel:
            raise ToolError("path and new_path are the same file")
        self.overlay.rename(rel, new_rel)
        return f"renamed '{rel}' to '{new_rel}'"

    def run_command(self, command: str, timeout: int | None = None) -> str:
        if self.commands is None:
            raise ToolError("run_command is not available in this request")
        return self.commands.run(command, timeout, self.overlay)

    def delete_file(self, path: str) -> str:
        rel = self.ws.rel(path, writing=True)
        self.overlay.delete(rel)
        return f"deleted '{rel}'"
