"""One bad setting is reported and falls back alone; every good setting beside it applies
(issue 27.5). Before, `review: "bogus"` in initializationOptions was reported and then every
other option was ignored, so requests failed on the default model."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types as lsp

from glm_lsp.config import Settings
from glm_lsp.core.settings import SettingsState
from glm_lsp.memory.thinking_log import ThinkingLog
from tests.test_server import EXPLAIN, command, rng, server, until


async def test_a_bad_and_an_unknown_setting_leave_the_good_ones_applied(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    model = tiny_model_dir
    # No --model flag: only the initialization options name the tiny model. maxTokens so large
    # that prompt + maxTokens exceeds contextLength: the second request must drop the first from
    # its prompt, which shows maxTokens applied (the default 4096 drops nothing).
    init = {"glm": {"review": "bogus", "model": str(model), "maxTokens": 65000, "colour": "red"}}
    async with server(tmp_path, None, [EXPLAIN, EXPLAIN], init_options=init) as (
        client,
        _rec,
        root,
    ):
        await until(lambda: client.messages)
        (message,) = client.messages
        assert message.type == lsp.MessageType.Error
        review, colour = message.message.split("\n")
        assert review.startswith('glm.review is "bogus"; accepted values: "preview", "direct"')
        assert review.endswith('glm.review stays "preview"')
        assert colour.startswith("unknown setting glm.colour; known settings: backend")

        assert (await command(client, "glm.status", {}))["model"] == str(model)
        uri = (root / "pkg" / "a.py").as_uri()
        for _ in range(2):
            explained = await command(client, "glm.explain", {"uri": uri, "range": rng(0, 0, 0, 0)})
            assert explained["text"] == EXPLAIN
    first, second = ThinkingLog(Settings().state_dir(root)).records()
    assert "compacted" not in first
    assert second["compacted"] == {"droppedTurns": [1]}


def test_each_bad_key_keeps_its_previous_value_and_the_rest_apply() -> None:
    state = SettingsState(Settings(maxSteps=7))  # a flag: wins over the client
    assert state.update({"glm": {"temperature": 0.2, "maxTokens": 100}}) is None
    message = state.update(
        {"glm": {"maxTokens": 0, "thinking": "enabled", "temperature": "hot", "maxSteps": 3}}
    )
    assert message is not None
    tokens, temperature = message.split("\n")
    assert tokens.startswith("glm.maxTokens is 0;") and tokens.endswith("glm.maxTokens stays 100")
    assert temperature.startswith('glm.temperature is "hot";') and "stays 0.2" in temperature
    s = state.effective
    assert (s.maxTokens, s.temperature, s.thinking, s.maxSteps) == (100, 0.2, "enabled", 7)
    # Not an object at all: nothing to apply, one sentence, the settings as they were.
    assert state.update(["maxTokens", 5]) == "glm settings must be an object of settings"
    assert state.effective == s
