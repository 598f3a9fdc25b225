"""Settings as a front-end receives them (the README's Settings): sources merged in order, bad
values refused with a message, and the settings that let commands run refused from a workspace.

Sources, later wins: defaults, the client's initial settings, its later changes, command-line
flags. The LSP server and the ACP agent each hold one SettingsState.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from glm_lsp.config import RUN_KEYS, Settings, SettingsError, kebab


def settings_section(raw: Any) -> dict[str, Any]:
    """The `glm` section, whether the client nests it under "glm" or sends it flat."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SettingsError("glm", "glm settings must be an object of settings")
    if "glm" in raw and isinstance(raw["glm"], Mapping):
        return dict(raw["glm"])
    return dict(raw)


def refused_message(keys: list[str]) -> str:
    names = ", ".join(f"glm.{k}" for k in keys)
    flags = ", ".join(f"--{kebab(k)}" if k != "allowCommands" else "--allow-command" for k in keys)
    return (
        f"{names} ignored: settings that let commands run count only from your own "
        "configuration, never a workspace's (VS Code: user settings; Neovim: your init.lua; "
        f"other editors: initializationOptions, or the serve flags {flags}); "
        "restart the server after changing them"
    )


def _same(a: Any, b: Any) -> bool:
    norm = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
    return norm(a) == norm(b)


class SettingsState:
    """`client`: defaults + the client's settings; `effective`: that with the flags on top."""

    def __init__(self, flags: Settings) -> None:
        self.flags = flags.changed()  # only the flags given: they win over the client
        self.client = Settings()
        self.effective = flags

    def update(self, raw: Any, *, from_workspace: bool = False) -> str | None:
        """Apply the client's settings; on a bad value return the error and keep the old ones.
        `from_workspace`: a change that may carry a repository's own settings, so the settings
        that make commands run are refused there (returned as the message)."""
        try:
            changes = settings_section(raw)
            refused = []
            if from_workspace:
                for key in RUN_KEYS:
                    if key in changes and not _same(changes[key], getattr(self.client, key)):
                        refused.append(key)
                    changes.pop(key, None)
            client = self.client.merged(changes)
            effective = client.merged(self.flags)
        except SettingsError as exc:
            return str(exc)
        self.client, self.effective = client, effective
        return refused_message(refused) if refused else None
