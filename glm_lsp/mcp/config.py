"""MCP server configuration in the shape Claude Code and Cursor users already write:
`{"name": {"command", "args", "env"}}` (stdio) or `{"name": {"url", "headers"}}` (streamable
HTTP); ACP's `session/new` list shape too. No I/O besides reading `.mcp.json`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_FILE = ".mcp.json"
MAX_PROJECT_BYTES = 1 << 20  # a config file; a bigger one is not what it claims to be
# `<server>__<tool>` must split one way only, and the name must be a plain word in a prompt.
SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*(_[A-Za-z0-9-]+)*$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
EXAMPLE = '{"notes": {"command": "python", "args": ["notes_server.py"]}}'


class McpConfigError(ValueError):
    """A bad server entry; the message names the entry and the accepted shape."""


@dataclass(frozen=True)
class ServerConfig:
    name: str
    source: str  # "settings" | ".mcp.json" | "acp"
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold tokens

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"

    def describe(self) -> str:
        """What starts: the command line or the URL (never the env or header values)."""
        if self.command:
            return " ".join([self.command, *self.args])
        return str(self.url)

    def variables(self) -> tuple[str, ...]:
        """The user's environment variables the entry reads: each `${VAR}` that expand() fills
        in at start (in the command, args, env values, url and header values)."""
        texts = [self.command or "", *self.args, self.url or ""]
        texts += [v for _, v in (*self.env, *self.headers)]
        found = (m.group(1) for text in texts for m in _VAR.finditer(text))
        return tuple(dict.fromkeys(found))

    def disclosure(self) -> str:
        """Everything the entry starts, passes or sends, as written (`${VAR}` unexpanded) and
        JSON-quoted so no value can pass for more of the list: what approving it approves."""
        if self.command:
            parts = [f"command {_quoted(self.command)}", f"args {_quoted(list(self.args))}"]
            parts.append(f"env {_quoted_pairs(self.env)}")
        else:
            parts = [f"url {_quoted(self.url)}", f"headers {_quoted_pairs(self.headers)}"]
        names = self.variables()
        reads = f"; reads your environment variables {', '.join(names)}" if names else ""
        return f"{self.name}: {', '.join(parts)}{reads}"


def _quoted(value: Any) -> str:
    """JSON, ASCII-only: a line break, control or bidi character shows as an escape."""
    return json.dumps(value)


def _quoted_pairs(items: Sequence[tuple[str, str]]) -> str:
    """Pairs as a JSON object, each pair kept (a list of {name, value} may repeat a name)."""
    return "{" + ", ".join(f"{_quoted(k)}: {_quoted(v)}" for k, v in items) + "}"


def _strings(where: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise McpConfigError(f"{where}: {key} must be a list of strings, not {_show(value)}")
    return tuple(value)


def _pairs(where: str, key: str, value: Any) -> tuple[tuple[str, str], ...]:
    """An object of strings, or ACP's list of {name, value}."""
    if isinstance(value, (list, tuple)):
        items = []
        for item in value:
            if not (isinstance(item, Mapping) and isinstance(item.get("name"), str)):
                raise McpConfigError(f"{where}: {key} items must be {{name, value}} objects")
            items.append((item["name"], item.get("value")))
    elif isinstance(value, Mapping):
        items = list(value.items())
    else:
        raise McpConfigError(f"{where}: {key} must be an object of strings, not {_show(value)}")
    if not all(isinstance(k, str) and k and isinstance(v, str) for k, v in items):
        raise McpConfigError(f"{where}: {key} must map names to string values")
    return tuple(items)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:79] + "…"


def server(name: Any, entry: Any, source: str) -> ServerConfig:
    """One validated entry; McpConfigError says what is wrong and what is accepted."""
    where = f"mcpServers.{name}" if source == "settings" else f"{source} server {name!r}"
    if not isinstance(name, str) or not SERVER_NAME.match(name):
        raise McpConfigError(
            f"{where}: the server name must be letters, digits, '-' and single '_' (tools are "
            'named <server>__<tool>), e.g. "notes"'
        )
    if not isinstance(entry, Mapping):
        raise McpConfigError(
            f"{where} must be an object with command (and args, env) or url (and headers), "
            f"e.g. {EXAMPLE}"
        )
    known = {"command", "args", "env", "url", "headers", "type", "name"}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise McpConfigError(f"{where}: unknown key {unknown[0]!r}; known keys: {sorted(known)}")
    if entry.get("type") not in (None, "stdio", "http", "streamable-http"):
        raise McpConfigError(
            f"{where}: type {_show(entry.get('type'))} is not supported; glm-lsp speaks stdio "
            "(command) and streamable HTTP (url)"
        )
    command, url = entry.get("command"), entry.get("url")
    if (command is None) == (url is None):
        raise McpConfigError(
            f"{where} needs exactly one of command (a program started over stdio) or url "
            f"(streamable HTTP), e.g. {EXAMPLE}"
        )
    if command is not None:
        if not isinstance(command, str) or not command.strip():
            raise McpConfigError(f"{where}: command must be a program name or path")
        if "url" in entry or "headers" in entry:
            raise McpConfigError(f"{where}: headers apply to url servers, not command ones")
        return ServerConfig(
            name,
            source,
            command=command,
            args=_strings(where, "args", entry.get("args") or []),
            env=_pairs(where, "env", entry.get("env") or {}),
        )
    if not isinstance(url, str) or not re.match(r"^https?://", url):
        raise McpConfigError(f"{where}: url must start with http:// or https://, not {_show(url)}")
    if "args" in entry or "env" in entry:
        raise McpConfigError(f"{where}: args and env apply to command servers, not url ones")
    return ServerConfig(
        name, source, url=url, headers=_pairs(where, "headers", entry.get("headers") or {})
    )


def servers(raw: Any, source: str = "settings") -> tuple[ServerConfig, ...]:
    """`{"name": {...}}` (settings, `.mcp.json`'s `mcpServers`) or ACP's list of named entries."""
    if isinstance(raw, Mapping):
        return tuple(server(name, entry, source) for name, entry in raw.items())
    if isinstance(raw, (list, tuple)):
        out = [server(e.get("name") if isinstance(e, Mapping) else None, e, source) for e in raw]
        names = [s.name for s in out]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate:
            raise McpConfigError(f"{source}: the server name {duplicate!r} is given twice")
        return tuple(out)
    raise McpConfigError(
        f"mcpServers must be an object of servers by name, e.g. {EXAMPLE}; got {_show(raw)}"
    )


def check_setting(value: Any) -> dict[str, Any]:
    """The mcpServers setting as stored (the object itself, so it compares to what editors send)."""
    if not isinstance(value, Mapping):
        raise McpConfigError(
            f"mcpServers must be an object of servers by name, e.g. {EXAMPLE}; got {_show(value)}"
        )
    servers(value)
    return dict(value)


def expand(config: ServerConfig) -> ServerConfig:
    """`${VAR}` and `${VAR:-default}` in args, env, url and headers, from the daemon's
    environment at start (as Claude Code does), so tokens stay out of the file."""

    def sub(text: str) -> str:
        return _VAR.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), text)

    return ServerConfig(
        config.name,
        config.source,
        command=sub(config.command) if config.command else None,
        args=tuple(sub(a) for a in config.args),
        env=tuple((k, sub(v)) for k, v in config.env),
        url=sub(config.url) if config.url else None,
        headers=tuple((k, sub(v)) for k, v in config.headers),
    )


@dataclass(frozen=True)
class ProjectFile:
    path: Path
    digest: str  # approval_digest of the servers
    servers: tuple[ServerConfig, ...]

    def disclosure(self) -> list[str]:
        """One line per server: everything an approval of the file covers."""
        return [s.disclosure() for s in self.servers]


def read_project_file(root: Path) -> ProjectFile | None:
    """The workspace's `.mcp.json` (`{"mcpServers": {...}}`), None when there is none;
    McpConfigError when it is malformed."""
    path = root / PROJECT_FILE
    data = _read_real_file(path)
    if data is None:
        return None
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise McpConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(parsed, Mapping) or not isinstance(parsed.get("mcpServers"), Mapping):
        raise McpConfigError(f'{path} must hold {{"mcpServers": {EXAMPLE}}}')
    found = servers(parsed["mcpServers"], PROJECT_FILE)
    return ProjectFile(path, approval_digest(found), found)


def _read_real_file(path: Path) -> bytes | None:
    """The file's bytes, never through a symlink (the workspace's links may point anywhere: a
    file of the user's is not the workspace's config); None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if path.is_symlink():
            raise McpConfigError(
                f"{path} is a symbolic link; glm-lsp reads a workspace's {PROJECT_FILE} only as "
                "a real file in it (nothing it points to was read)"
            ) from None
        raise McpConfigError(f"{path} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise McpConfigError(f"{path} is not a regular file")
        data = file.read(MAX_PROJECT_BYTES + 1)
    if len(data) > MAX_PROJECT_BYTES:
        raise McpConfigError(f"{path} is over {MAX_PROJECT_BYTES} bytes; a .mcp.json is smaller")
    return data


def approval_digest(configs: Sequence[ServerConfig]) -> str:
    """What an approval covers: every field of every server as written (before `${VAR}` is
    expanded), exactly what disclosure() shows; a change to any of them asks again."""
    shape = [
        {
            "name": c.name,
            "command": c.command,
            "args": list(c.args),
            "env": [list(pair) for pair in c.env],
            "url": c.url,
            "headers": [list(pair) for pair in c.headers],
        }
        for c in sorted(configs, key=lambda c: c.name)
    ]
    return hashlib.sha256(json.dumps(shape).encode("ascii")).hexdigest()


def merge(*groups: Sequence[ServerConfig]) -> tuple[ServerConfig, ...]:
    """Earlier groups win a name (the user's settings over a session's over the project's)."""
    out: dict[str, ServerConfig] = {}
    for group in groups:
        for config in group:
            out.setdefault(config.name, config)
    return tuple(out[name] for name in sorted(out))  # sorted: a stable prompt prefix
