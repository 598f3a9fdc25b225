"""Settings (the README's Settings): one typed attrs model, one line per setting.

The wire converter (glm_lsp.wire) checks values against each field's type and constraints, so
errors name the key and what it accepts; the JSON schema and the editors' checks derive from the
same fields. Metadata says which settings let commands run (`run`) and which need a new backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import attrs

from glm_lsp.state_files import conversation_state_dir
from glm_lsp.wire.commands import MAX_TEXT
from glm_lsp.wire.constraints import Number, Text
from glm_lsp.wire.converter import converter, describe, show, wire


class SettingsError(ValueError):
    """A bad settings value; the message names the key and what it accepts."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


NonEmpty = Annotated[str, Text()]
Path_ = Annotated[str, Text(describes="a path")]
PositiveInt = Annotated[int, Number(1)]


# Field metadata: `run` settings let commands run, so they count only from the user's own
# configuration; `backend` settings need a new backend (and so a new session) when they change;
# `accepts` gives the words errors and the schema use where the type alone says it badly.
RUN = {"run": True}
BACKEND = {"backend": True}


Label = Annotated[str, Text(max_len=80, strip=True)]
Instruction = Annotated[str, Text(max_len=MAX_TEXT, strip=True)]


@wire(forbid_extra=True)
@attrs.frozen
class CodeActionSetting:
    """A code action with its instruction written out, offered as "GLM: <label>" for a
    selection: a client that cannot ask for an instruction runs it whole."""

    label: Label
    instruction: Instruction


DEFAULT_CODE_ACTIONS = (
    CodeActionSetting("Simplify", "Simplify this code without changing what it does."),
    CodeActionSetting(
        "Add docstrings",
        "Add docstrings (or the language's doc comments) to the functions, classes and methods "
        "here that lack them, saying what each does; change no code.",
    ),
    CodeActionSetting(
        "Add type hints",
        "Add type annotations to this code where the language supports them, matching the "
        "project's style; change no behaviour.",
    ),
    CodeActionSetting(
        "Write tests for this",
        "Write tests for this code with the project's test framework, in its test layout (a new "
        "test file if there is none for it), covering the normal cases and the edge cases.",
    ),
)


@wire(forbid_extra=True)
@attrs.frozen
class Settings:
    backend: Literal["mlx", "openai"] = attrs.field(default="mlx", metadata=BACKEND)
    model: NonEmpty = attrs.field(default="mlx-community/GLM-4.7-8bit-gs32", metadata=BACKEND)
    baseUrl: NonEmpty = attrs.field(default="http://127.0.0.1:1234/v1", metadata=BACKEND)
    apiKeyEnv: NonEmpty = attrs.field(default="GLM_LSP_API_KEY", metadata=BACKEND)
    thinking: Literal["auto", "enabled", "disabled"] = "auto"
    preserveThinking: bool = True
    temperature: Annotated[float, Number(0.0, 2.0, whole=False)] = 0.7
    topP: Annotated[float, Number(0.0, 1.0, whole=False)] = 1.0
    maxTokens: PositiveInt = 4096
    contextLength: PositiveInt = 65536
    kvBits: Literal[4, 8] | None = attrs.field(default=None, metadata=BACKEND)
    maxSteps: PositiveInt = 24
    stateDir: Path_ | None = attrs.field(default=None, metadata=BACKEND)
    persistKvCache: bool = attrs.field(default=True, metadata=BACKEND)
    scriptedReplies: Path_ | None = attrs.field(default=None, metadata=BACKEND)
    # The per-user host (one model per machine): attach to it (auto) or run in-process (off);
    # how long it keeps an unused model loaded (minutes, -1 never) and KV caches in memory.
    host: Literal["auto", "off"] = attrs.field(default="auto", metadata=BACKEND)
    keepAlive: Annotated[float, Number(-1, whole=False)] = 30.0
    hostCacheGB: Annotated[float, Number(0, whole=False)] = 8.0
    # run_command and verification: `run` settings count only from the user's own config.
    allowCommands: tuple[Annotated[str, Text(strip=True)], ...] = attrs.field(
        default=(),
        metadata=RUN | {"accepts": 'a list of glob patterns such as ["pytest *", "npm test"]'},
    )
    verifyCommand: Annotated[str, Text(strip=True, describes="a command line")] | None = (
        attrs.field(default=None, metadata=RUN)
    )
    verifyRounds: Annotated[int, Number(0)] = 2
    commandTimeout: PositiveInt = 300
    sandbox: Literal["required", "off"] = attrs.field(default="required", metadata=RUN)
    allowNetwork: bool = attrs.field(default=False, metadata=RUN)
    # What else commands get: environment variables by name (never secret-looking ones), and
    # paths hidden from them besides the credentials the sandbox always hides.
    commandEnv: tuple[Annotated[str, Text(strip=True)], ...] = attrs.field(
        default=(), metadata=RUN | {"accepts": 'a list of variable names such as ["DATABASE_URL"]'}
    )
    sandboxHide: tuple[Annotated[str, Text(strip=True)], ...] = attrs.field(
        default=(), metadata=RUN | {"accepts": 'a list of paths such as ["~/work/secrets"]'}
    )
    review: Literal["preview", "direct"] = "preview"  # preview: the editor asks per file
    speculativeDecoding: bool = True  # prompt-lookup drafts, verified exactly
    draftTokens: PositiveInt = 8  # the most tokens drafted per verification pass
    # MCP servers ({"name": {"command", "args", "env"} | {"url", "headers"}}) and their calls;
    # mcpServers is checked by mcp/config (its messages show the shape users write).
    mcpServers: dict[str, Any] = attrs.field(
        factory=dict,
        metadata=RUN
        | {"accepts": 'an object of servers by name, e.g. {"notes": {"command": "x"}}'},
    )
    mcpAllow: tuple[Annotated[str, Text(strip=True)], ...] = attrs.field(
        default=(), metadata=RUN | {"accepts": 'a list of glob patterns such as ["notes__*"]'}
    )  # "<server>__<tool>" globs called without asking
    mcpAllowReadOnly: bool = attrs.field(default=False, metadata=RUN)  # readOnlyHint tools
    mcpTimeout: PositiveInt = 60  # seconds for a server to start or a call to answer
    # Refactors any client can run from its code-action menu, no prompt needed.
    codeActions: tuple[CodeActionSetting, ...] = attrs.field(
        default=DEFAULT_CODE_ACTIONS,
        metadata={
            "accepts": 'a list of {"label", "instruction"} objects, e.g. '
            '[{"label": "Simplify", "instruction": "Simplify this code."}]'
        },
    )

    def merged(self, changes: Mapping[str, Any]) -> Settings:
        """A copy with `changes` applied; raises SettingsError on the first bad key or value."""
        settings, errors = self.merged_partly(changes)
        if errors:
            raise errors[0]
        return settings

    def merged_partly(self, changes: Mapping[str, Any]) -> tuple[Settings, list[SettingsError]]:
        """A copy with every good key of `changes` applied, and one error per bad value or
        unknown key (in the order the changes came): those keys keep their values here, so one
        mistake does not cost the user every other setting."""
        good, errors = dict(changes), []
        if "mcpServers" in good:
            from glm_lsp.mcp.config import McpConfigError, check_setting

            try:
                good["mcpServers"] = check_setting(good["mcpServers"])
            except McpConfigError as exc:
                errors.append(SettingsError("mcpServers", f"glm.{exc}"))
                del good["mcpServers"]
        while good:  # each pass drops the keys the converter named; the last names none
            try:
                # as on the wire: held values (tuples of models) structure like what clients send
                plain = converter.unstructure({**self.to_dict(), **good})
                settings = converter.structure(plain, Settings)
            except Exception as exc:
                found = settings_errors(exc, good)
                named = [e for e in found if e.key in good]
                errors += named or found
                if not named:  # nothing to drop: apply none of it rather than guess
                    break
                for error in named:
                    good.pop(error.key, None)
            else:
                return settings, _ordered(errors, changes)
        return self, _ordered(errors, changes)

    def state_dir(self, workspace: Path) -> Path:
        """The workspace's state dir; one inside the workspace that this glm-lsp did not create
        (committed, cloned) is left alone and the conversation kept in the user's state."""
        path = Path(self.stateDir).expanduser() if self.stateDir else Path(".glm-lsp")
        return conversation_state_dir(workspace / path, workspace)

    def to_dict(self) -> dict[str, Any]:
        """Every setting by its wire name, values as held (allowCommands a tuple)."""
        return attrs.asdict(self, recurse=False)

    def changed(self) -> dict[str, Any]:
        """The settings that differ from the defaults (command-line flags that were given)."""
        defaults = Settings()
        return {k: v for k, v in self.to_dict().items() if getattr(defaults, k) != v}


attrs.resolve_types(Settings)  # string annotations (PEP 563) to types, for describe()
KEYS = tuple(a.name for a in attrs.fields(Settings))
RUN_KEYS = tuple(a.name for a in attrs.fields(Settings) if a.metadata.get("run"))
BACKEND_KEYS = tuple(a.name for a in attrs.fields(Settings) if a.metadata.get("backend"))

# Settings that decide where data goes or what runs (issue 25): they count only from the user's
# own configuration (initializationOptions, command-line flags), never from a workspace's
# (didChangeConfiguration may carry a repository's editor settings). Names, not fields: a name
# listed before it is a setting refuses nothing more than the unknown key it is.
USER_ONLY = frozenset(
    {
        # where the code, the conversation and the API key go
        "backend", "model", "baseUrl", "apiKeyEnv", "stateDir", "scriptedReplies",
        # the host is the user's machine-wide process: a repository does not start or size it
        "host", "keepAlive", "hostCacheGB",
        # whether edits land without the user's review
        "review",
        # what commands run, how long, how often, and what they see
        "allowCommands", "verifyCommand", "verifyRounds", "commandTimeout", "sandbox",
        "allowNetwork", "commandEnv", "sandboxHide",
        # MCP servers start programs and send headers; every mcp* setting is user-only
        "mcpServers", "mcpAllow", "mcpAllowReadOnly", "mcpTimeout",
        # what the model is told on the user's behalf: the menu shows only the label, so a
        # repository could put any instruction (read .env into a file, ...) under "Simplify",
        # landing unreviewed with review "direct"; the user's own actions cost a repository
        # nothing it needs (a `GLM:` comment in the code says an instruction openly)
        "codeActions",
    }
)  # fmt: skip


def user_only(key: str) -> bool:
    """Whether `key` counts only from the user's own configuration: the list above, any MCP
    setting, and any setting marked `run`."""
    return key in USER_ONLY or key.startswith("mcp") or key in RUN_KEYS


USER_ONLY_KEYS = tuple(k for k in KEYS if user_only(k))


def accepts(key: str) -> str:
    field = attrs.fields_dict(Settings)[key]
    return field.metadata.get("accepts") or describe(field.type)


def settings_errors(exc: Exception, changes: Mapping[str, Any]) -> list[SettingsError]:
    """The converter's complaints as one sentence per key, in the order the changes came; a
    list setting's names each bad entry, then what the setting accepts."""
    from glm_lsp.wire.converter import problems

    found: list[SettingsError] = []
    entries: dict[str, list[str]] = {}  # key -> its bad entries, in order
    for problem in problems(exc, Settings):
        if problem.extra and not problem.path:
            for key in problem.extra:
                message = f"unknown setting glm.{key}; known settings: {', '.join(KEYS)}"
                found.append(SettingsError(key, message))
            continue
        key = problem.path.split(".")[0].split("[")[0]
        if problem.path == key:
            message = f"glm.{key} is {show(changes.get(key))}; accepted values: {accepts(key)}"
            found.append(SettingsError(key, message))
        else:
            entries.setdefault(key, []).append(_entry(problem, key, changes.get(key)))
    for key, parts in entries.items():
        found.append(SettingsError(key, f"{'; '.join(parts)}; glm.{key} accepts {accepts(key)}"))
    if not found:
        return [SettingsError("glm", f"glm settings are not accepted: {exc}")]
    return _ordered(found, changes)


def _entry(problem: Any, key: str, value: Any) -> str:
    """A problem inside a list setting, naming the entry and showing it so the user finds it:
    `glm.codeActions[1] ({"label": "Tests"}): instruction is missing; ...`."""
    index, _, rest = problem.path.removeprefix(key).partition("]")
    rest = rest.removeprefix(".")
    if not index.startswith("[") or not rest:
        return f"glm.{problem.path} {problem.text}"
    i = int(index[1:])
    entry = f" ({show(value[i])})" if isinstance(value, list | tuple) and i < len(value) else ""
    return f"glm.{key}{index}]{entry}: {rest} {problem.text}"


def _ordered(errors: list[SettingsError], changes: Mapping[str, Any]) -> list[SettingsError]:
    order = {key: i for i, key in enumerate(changes)}
    return sorted(errors, key=lambda e: order.get(e.key, len(order)))


def validate(key: str, value: Any) -> Any:
    """The value to store for `key`, or SettingsError naming the key and the accepted values."""
    return getattr(Settings().merged({key: value}), key)


def kebab(key: str) -> str:
    """The command-line flag spelling of a setting: maxTokens -> max-tokens."""
    return "".join("-" + c.lower() if c.isupper() else c for c in key)
