"""The host's engine in-process, on the tiny model: what only its memory policy decides."""

from __future__ import annotations

from pathlib import Path

from glm_lsp.host.engine import Engine, Generation
from glm_lsp.runtime.base import CompletionRequest

PROMPT = "<|system|>\nYou help.<|user|>\nWhat is A?<|assistant|>\n"


def generation(engine: Engine, model: Path, folder: Path, prompt: str, reply: str) -> Generation:
    return Generation(
        model=str(model),
        conversation=lambda loaded: engine.conversation(
            folder, loaded, lambda: loaded.conversation(state_dir=folder, persist=True)
        ),
        request=CompletionRequest(prompt=prompt, max_tokens=64),
        on_text=lambda _piece: None,
        on_status=lambda _message, _percent: None,
        scripted=reply,
    )


def test_host_cache_gb_sends_the_least_recently_used_cache_to_disk_and_it_comes_back(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    engine = Engine(keep_alive_min=-1, cache_gb=0)  # nothing fits: only the cache in use stays
    a, b = tmp_path / "a", tmp_path / "b"
    try:
        first = engine.submit(generation(engine, tiny_model_dir, a, PROMPT, "One.")).result()
        assert engine.conversations[a].cache is not None
        engine.submit(generation(engine, tiny_model_dir, b, PROMPT, "Two.")).result()
        # b's generation pushed a's cache out of memory, onto disk
        assert engine.conversations[a].cache is None
        assert engine.conversations[b].cache is not None
        assert (a / "kv-cache.safetensors").is_file()
        follow_up = PROMPT + "One.<|user|>\nAnd B?<|assistant|>\n"
        again = engine.submit(generation(engine, tiny_model_dir, a, follow_up, "Three.")).result()
        # restored from disk: the first request and its answer are not computed again
        assert (
            again.stats.reusedTokens >= first.stats.promptTokens + first.stats.generatedTokens - 1
        )
        assert [m["loads"] for m in engine.status()["models"]] == [1]
        assert len(engine.status()["recent"]) == 3
    finally:
        engine.close()
