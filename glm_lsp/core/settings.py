"""Settings as a front-end receives them (the README's Settings): sources merged in order, each
bad value refused with a message while the good ones beside it apply, and the user-only settings (config.USER_ONLY: where data goes,
what runs) refused from a workspace.

Sources, later wins: defaults, the client's initial settings, its later changes, command-line
flags. The LSP server and the ACP agent each hold one SettingsState.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from glm_lsp.config import KEYS, Settings, SettingsError, kebab, user_only
from glm_lsp.wire.converter import show

log = logging.getLogger(__name__)


def settings_section(raw: Any) -> dict[str, Any]:
    """The `glm` section, whether the client nests it under "glm" or sends it flat."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SettingsError("glm", "glm settings must be an object of settings")
    if "glm" in raw and isinstance(raw["glm"], Mapping):
        return dict(raw["glm"])
    return dict(raw)


# Flags whose spelling is not the key's kebab-case (a list taken one item per flag).
FLAGS = {"allowCommands": "--allow-command", "mcpAllow": "--mcp-allow"}


def refused_message(keys: list[str]) -> str:
    names = ", ".join(f"glm.{k}" for k in keys)
    flags = ", ".join(FLAGS.get(k) or f"--{kebab(k)}" for k in keys)
    return (
        f"{names} ignored: settings that decide where your code and keys go or what runs count "
        "only from your own configuration, never a workspace's (VS Code: user settings; Neovim: "
        "your init.lua; other editors: initializationOptions, or the serve flags "
        f"{flags}); restart the server after changing them"
    )


def _unchanged(current: Settings, key: str, value: Any) -> bool:
    """Whether `value` is what `key` already holds (Neovim sends its own settings both ways):
    no change, so nothing to refuse. A key that is no setting, or a bad value, is a change."""
    if not hasattr(current, key):
        return False
    try:
        return getattr(current.merged({key: value}), key) == getattr(current, key)
    except SettingsError:
        return False


class SettingsState:
    """`client`: defaults + the client's settings; `effective`: that with the flags on top."""

    def __init__(self, flags: Settings) -> None:
        self.flags = flags.changed()  # only the flags given: they win over the client
        self.client = Settings()
        self.effective = flags

    def update(self, raw: Any, *, from_workspace: bool = False) -> str | None:
        """Apply the client's settings: each good key applies; each bad value or unknown key is
        named in the returned message (one line each) and keeps its previous value.
        `from_workspace`: a change that may carry a repository's own settings, so the user-only
        settings (config.USER_ONLY) in it are refused, named in the returned message, and keep
        their values; the other keys still apply."""
        try:
            changes = settings_section(raw)
        except SettingsError as exc:
            return str(exc)
        refused: list[str] = []
        if from_workspace:
            for key in [k for k in changes if user_only(k)]:
                if not _unchanged(self.client, key, changes.pop(key)):
                    refused.append(key)
        if refused:
            log.warning("refused user-only settings from the workspace: %s", ", ".join(refused))
        client, errors = self.client.merged_partly(changes)
        self.client, self.effective = client, client.merged(self.flags)
        messages = [_kept(error, self.effective) for error in errors]
        if refused:
            messages.append(refused_message(refused))
        return "\n".join(messages) or None


def _kept(error: SettingsError, settings: Settings) -> str:
    """The error, and the value the key keeps instead (its previous one: at first the default,
    or the flag's); lists and objects by name, as they can be long."""
    if error.key not in KEYS:
        return str(error)
    value = getattr(settings, error.key)
    if isinstance(value, str | int | float | None):
        return f"{error}; glm.{error.key} stays {show(value)}"
    which = "default" if value == getattr(Settings(), error.key) else "previous value"
    return f"{error}; glm.{error.key} keeps its {which}"
