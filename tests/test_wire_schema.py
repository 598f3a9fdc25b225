"""The wire models are the one definition of every shape: the converter checks input against
them, the checked-in JSON schema and VS Code types are generated from them, and the Neovim plugin's
settings table must equal them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from glm_lsp.config import Settings, SettingsError
from glm_lsp.core.requests import BadArguments, arguments
from glm_lsp.memory.thinking_log import new_record
from glm_lsp.wire.converter import converter
from glm_lsp.wire.records import ChangeRecord, Hunks, Stats, Verification
from glm_lsp.wire.schema import SCHEMA_PATH, render, schema
from glm_lsp.wire.typescript import TS_PATH, render_typescript

ROOT = Path(__file__).resolve().parents[1]
HEALTH = ROOT / "editors/nvim/lua/glm_lsp/health.lua"


def validator(ref: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**schema(), **ref})


def test_checked_in_schema_is_generated_from_the_models() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), (
        "run: python -m glm_lsp.wire --schema --write"
    )
    jsonschema.Draft202012Validator.check_schema(schema())


def test_vscode_types_are_generated_from_the_schema() -> None:
    assert TS_PATH.read_text(encoding="utf-8") == render_typescript(), (
        "run: python -m glm_lsp.wire --typescript --write"
    )


LUA_KINDS = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean"}
LUA_KINDS |= {"array": "table", "object": "table", "null": "nil"}


def lua_kinds(prop: dict[str, Any]) -> set[str]:
    if "enum" in prop:
        return {
            "nil"
            if v is None
            else "boolean"
            if isinstance(v, bool)
            else "number"
            if isinstance(v, (int, float))
            else "string"
            for v in prop["enum"]
        }
    if "anyOf" in prop:
        return set().union(*(lua_kinds(p) for p in prop["anyOf"]))
    return {LUA_KINDS[prop["type"]]}


def test_health_lua_knows_exactly_the_schemas_settings_and_their_kinds() -> None:
    text = HEALTH.read_text(encoding="utf-8")
    table = text.split("local KNOWN = {", 1)[1].split("\n}", 1)[0]
    lua = {k: set(v.split("|")) for k, v in re.findall(r"^\s+(\w+) = '([\w|]+)',$", table, re.M)}
    props = schema()["$defs"]["Settings"]["properties"]
    assert list(lua) == list(props)
    assert lua == {k: lua_kinds(p) for k, p in props.items()}


def test_the_schema_describes_the_settings_contract() -> None:
    props = schema()["$defs"]["Settings"]["properties"]
    assert props["backend"] == props["backend"] | {"enum": ["mlx", "openai"], "default": "mlx"}
    assert props["kvBits"]["enum"] == [4, 8, None]
    assert props["maxTokens"]["minimum"] == 1 and props["maxTokens"]["type"] == "integer"
    # where data goes or what runs (issue 25): only from the user's own configuration
    assert [k for k, p in props.items() if p.get("x-userOnly")] == [
        "backend",
        "model",
        "baseUrl",
        "apiKeyEnv",
        "stateDir",
        "scriptedReplies",
        "host",  # the per-user host (issue 26): a repository neither starts nor sizes it
        "keepAlive",
        "hostCacheGB",
        "allowCommands",
        "verifyCommand",
        "verifyRounds",
        "commandTimeout",
        "sandbox",
        "allowNetwork",
        "commandEnv",
        "sandboxHide",
        "review",
        "mcpServers",
        "mcpAllow",
        "mcpAllowReadOnly",
        "mcpTimeout",
        "codeActions",  # what the model is told under a label (issue 27)
    ]
    v = validator({"$ref": "#/$defs/Settings"})
    assert v.is_valid(converter.unstructure(Settings()))
    assert not v.is_valid({"maxTokens": 0}) and not v.is_valid({"nope": 1})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"maxTokens": 0}, "glm.maxTokens is 0; accepted values: a whole number >= 1"),
        ({"maxTokens": "3"}, 'glm.maxTokens is "3"; accepted values: a whole number >= 1'),
        ({"kvBits": True}, "glm.kvBits is true; accepted values: null, 4, 8"),
        ({"temperature": 2.5}, "glm.temperature is 2.5; accepted values: a number from 0.0 to 2.0"),
        ({"allowCommands": "pytest"}, 'glm.allowCommands is "pytest"; accepted values: a list'),
        ({"maxTokns": 5}, "unknown setting glm.maxTokns; known settings: backend, model"),
    ],
)
def test_settings_errors_name_the_key_and_what_it_accepts(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError) as err:
        Settings().merged(changes)
    assert str(err.value).startswith(message)


def test_settings_values_are_normalised_by_their_types() -> None:
    s = Settings().merged(
        {"allowCommands": [" pytest * "], "temperature": 1, "verifyCommand": " t "}
    )
    assert s.allowCommands == ("pytest *",) and s.temperature == 1.0 and s.verifyCommand == "t"
    assert isinstance(s.temperature, float)


@pytest.mark.parametrize(
    ("command", "arg", "message"),
    [
        ("glm.explain", {}, "glm.explain: 'uri' is missing; accepted values: a file: URI"),
        ("glm.refactor", {"uri": "file:///a"}, "glm.refactor: 'instruction' is missing"),
        (
            "glm.explain",
            {"uri": "u", "range": {"start": {"line": 0, "character": 0}, "end": {"line": -1}}},
            "glm.explain: 'range.end.line' is -1; accepted values: a whole number from 0 to",
        ),
        (
            "glm.fix",
            {
                "uri": "u",
                "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
                "diagnostics": ["ok", 5],
            },
            "glm.fix: 'diagnostics[1]' is 5; accepted values: a string or an object {message}",
        ),
        ("glm.ask", {"question": "a\udfffb"}, "glm.ask: 'question' has an unpaired surrogate"),
        ("glm.thinking.show", {"limit": True}, "glm.thinking.show: 'limit' is true"),
        ("glm.status", {"uri": "x" * 5000}, "glm.status: 'uri' is 5000 characters long"),
        ("glm.explain", {"uri": "u", "thinking": "maybe"}, "'thinking' is \"maybe\"; accepted"),
    ],
)
def test_argument_errors_come_from_the_converter_naming_the_field(
    command: str, arg: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadArguments) as err:
        arguments(command, [arg])
    assert message in str(err.value)


def test_arguments_ignore_unknown_keys_and_take_thinking_booleans() -> None:
    a = arguments("glm.explain", [{"uri": "file:///a", "thinking": True, "later": 1}])
    assert a.uri == "file:///a" and a.thinking is True


def test_a_log_record_matches_the_schema() -> None:
    record = new_record(
        turn=1,
        command="glm.fix",
        thinking="enabled",
        messages=[{"role": "user", "content": "q"}],
        stats=Stats(promptTokens=3),
        summary="done",
        reads={"a.py": "abc", "gone.py": None},
        changes=[ChangeRecord("a.py", "modify", True, Hunks(1, 2))],
        applied=True,
        reviewed=True,
        verification=Verification("pytest", 0, "1 passed"),
        failure_reason=None,
    )
    assert record["v"] == 1 and record["reviewed"] is True and "failureReason" not in record
    assert record["verification"] == {"command": "pytest", "exitCode": 0, "summary": "1 passed"}
    validator({"$ref": "#/$defs/LogRecord"}).validate(json.loads(json.dumps(record)))
