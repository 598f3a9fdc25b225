"""Settings (the README's Settings): one typed object, validated with errors that name key and values."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal


class SettingsError(ValueError):
    """A bad settings value; the message names the key and what it accepts."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Settings:
    backend: Literal["mlx", "openai"] = "mlx"
    model: str = "mlx-community/GLM-4.7-8bit-gs32"
    baseUrl: str = "http://127.0.0.1:1234/v1"
    apiKeyEnv: str = "GLM_LSP_API_KEY"
    thinking: Literal["auto", "enabled", "disabled"] = "auto"
    preserveThinking: bool = True
    temperature: float = 0.7
    topP: float = 1.0
    maxTokens: int = 4096
    contextLength: int = 65536
    kvBits: int | None = None
    maxSteps: int = 24
    stateDir: str | None = None
    persistKvCache: bool = True
    scriptedReplies: str | None = None
    # run_command and verification; RUN_KEYS below count only from the user's own config.
    allowCommands: tuple[str, ...] = ()
    verifyCommand: str | None = None
    verifyRounds: int = 2
    commandTimeout: int = 300
    sandbox: Literal["required", "off"] = "required"
    allowNetwork: bool = False
    review: Literal["preview", "direct"] = "preview"  # preview: the editor asks before each file
    speculativeDecoding: bool = True  # prompt-lookup drafts, verified exactly
    draftTokens: int = 8  # the most tokens drafted per verification pass
    # MCP servers ({"name": {"command", "args", "env"} | {"url", "headers"}}) and their calls.
    mcpServers: dict[str, Any] = dataclasses.field(default_factory=dict)
    mcpAllow: tuple[str, ...] = ()  # "<server>__<tool>" globs called without asking
    mcpAllowReadOnly: bool = False  # tools the server marks readOnlyHint need no allow
    mcpTimeout: int = 60  # seconds for a server to start or a call to answer

    def merged(self, changes: Mapping[str, Any]) -> Settings:
        """A copy with `changes` applied; raises SettingsError on the first bad key or value."""
        values = {}
        for key, value in changes.items():
            values[key] = validate(key, value)
        return dataclasses.replace(self, **values)

    def state_dir(self, workspace: Path) -> Path:
        if self.stateDir:
            path = Path(self.stateDir).expanduser()
            return path if path.is_absolute() else workspace / path
        return workspace / ".glm-lsp"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


KEYS = tuple(f.name for f in fields(Settings))
_CHOICES: dict[str, tuple[Any, ...]] = {
    "backend": ("mlx", "openai"),
    "thinking": ("auto", "enabled", "disabled"),
    "kvBits": (None, 4, 8),
    "sandbox": ("required", "off"),
    "review": ("preview", "direct"),
}
_BOOLS = (
    "preserveThinking",
    "persistKvCache",
    "allowNetwork",
    "speculativeDecoding",
    "mcpAllowReadOnly",
)
_POSITIVE_INTS = (
    "maxTokens",
    "contextLength",
    "maxSteps",
    "commandTimeout",
    "draftTokens",
    "mcpTimeout",
)
# Settings that make commands run: a cloned repository must not be able to set them.
RUN_KEYS = (
    "allowCommands",
    "verifyCommand",
    "sandbox",
    "allowNetwork",
    "mcpServers",
    "mcpAllow",
    "mcpAllowReadOnly",
)
_OPTIONAL_STRINGS = ("stateDir", "scriptedReplies")
_RANGES = {"temperature": (0.0, 2.0), "topP": (0.0, 1.0)}


def _show(value: Any) -> str:
    return "null" if value is None else repr(value).replace("'", '"')


def validate(key: str, value: Any) -> Any:
    """The value to store for `key`, or SettingsError naming the key and the accepted values."""
    if key not in KEYS:
        raise SettingsError(key, f"unknown setting glm.{key}; known settings: {', '.join(KEYS)}")
    if key in _CHOICES:
        choices = _CHOICES[key]
        if isinstance(value, bool) or value not in choices:
            accepted = ", ".join(_show(c) for c in choices)
            raise SettingsError(key, f"glm.{key} is {_show(value)}; accepted values: {accepted}")
        return value
    if key in _BOOLS:
        if not isinstance(value, bool):
            raise SettingsError(key, f"glm.{key} is {_show(value)}; accepted values: true, false")
        return value
    if key in ("allowCommands", "mcpAllow"):
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) and v.strip() for v in value
        ):
            example = '["pytest *", "npm test"]' if key == "allowCommands" else '["notes__*"]'
            raise SettingsError(
                key,
                f"glm.{key} is {_show(value)}; accepted values: a list of glob patterns "
                f"such as {example}",
            )
        return tuple(v.strip() for v in value)
    if key == "mcpServers":
        from glm_lsp.agent.mcp_config import McpConfigError, check_setting

        try:
            return check_setting(value)
        except McpConfigError as exc:
            raise SettingsError(key, f"glm.{exc}") from None
    if key == "verifyCommand":
        if value is not None and not (isinstance(value, str) and value.strip()):
            raise SettingsError(
                key, f"glm.{key} is {_show(value)}; accepted values: a command line or null"
            )
        return value.strip() if value else None
    if key == "verifyRounds":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SettingsError(
                key, f"glm.{key} is {_show(value)}; accepted values: a whole number >= 0"
            )
        return value
    if key in _POSITIVE_INTS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SettingsError(
                key, f"glm.{key} is {_show(value)}; accepted values: a whole number >= 1"
            )
        return value
    if key in _RANGES:
        low, high = _RANGES[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not low <= value <= high
        ):
            raise SettingsError(
                key, f"glm.{key} is {_show(value)}; accepted values: a number from {low} to {high}"
            )
        return float(value)
    if key in _OPTIONAL_STRINGS:
        if value is not None and not (isinstance(value, str) and value):
            raise SettingsError(
                key, f"glm.{key} is {_show(value)}; accepted values: a path or null"
            )
        return value
    if not isinstance(value, str) or not value:
        raise SettingsError(
            key, f"glm.{key} is {_show(value)}; accepted values: a non-empty string"
        )
    return value


def kebab(key: str) -> str:
    """The command-line flag spelling of a setting: maxTokens -> max-tokens."""
    return "".join("-" + c.lower() if c.isupper() else c for c in key)
