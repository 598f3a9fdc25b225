"""Exported JSONL back into prompt-masked token sequences for mlx-lm's trainer.

mlx-lm's own datasets would put a `completions` record through the chat template a second time,
and render `chat` records with the template's defaults (earlier reasoning cleared, no stop token).
Rendering with `render_prompt` and the record's own flags trains on exactly the text the model saw
and produced, stop token included.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glm_lsp.glm.format import ASSISTANT, OBSERVATION, USER, render_prompt
from glm_lsp.traces.conversation import assistant_completion


class DataError(ValueError):
    """The training data is missing or not in a format we know; the message says which line."""


def record_text(record: Mapping[str, Any]) -> tuple[str, str]:
    """(prompt, completion) of one exported record, either format."""
    if "prompt" in record and "completion" in record:
        return str(record["prompt"]), str(record["completion"])
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError("neither {messages: [...]} nor {prompt, completion}")
    if messages[-1].get("role") != "assistant":
        raise DataError("a chat record must end with the assistant message to train on")
    # The template's defaults when a record does not say how it was rendered.
    kwargs = record.get("chat_template_kwargs") or {}
    enable = bool(kwargs.get("enable_thinking", True))
    prompt = render_prompt(
        messages[:-1],
        record.get("tools"),
        clear_thinking=bool(kwargs.get("clear_thinking", True)),
        enable_thinking=enable,
    )
    return prompt, assistant_completion(messages[-1], enable_thinking=enable)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            record_text(record)  # fail here, with the line number, not mid-training
        except ValueError as exc:
            raise DataError(f"{path}:{number}: {exc}") from None
        records.append(record)
    if not records:
        raise DataError(f"{path} holds no records")
    return records


def load_splits(data: Path) -> tuple[list[dict], list[dict], str | None]:
    """train and valid records from a directory (train.jsonl, valid.jsonl) or one .jsonl file;
    without a valid set the training data is reused, and the note says so."""
    if data.is_dir():
        train_path, valid_path = data / "train.jsonl", data / "valid.jsonl"
        if not train_path.exists():
            raise DataError(f"{data} has no train.jsonl")
    elif data.is_file():
        train_path, valid_path = data, None
    else:
        raise DataError(f"{data} is neither a .jsonl file nor a directory with train.jsonl")
    train = read_jsonl(train_path)
    if valid_path is not None and valid_path.exists():
        return train, read_jsonl(valid_path), None
    return train, train, "no valid.jsonl: losses are measured on the training data"


@dataclass
class Encoded:
    items: list[tuple[list[int], int]]  # (tokens, offset of the first trained token)
    truncated: int = 0  # prompts shortened to fit max_seq_length
    dropped: int = 0  # records whose completion alone does not fit


class TraceDataset:
    """The item protocol mlx-lm's iterate_batches reads: (tokens, offset) pairs, pre-tokenised
    so batches are sorted by their real length."""

    def __init__(self, items: Sequence[tuple[list[int], int]]) -> None:
        self.items = list(items)

    def __getitem__(self, index: int) -> tuple[list[int], int]:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)


def encode(records: Sequence[Mapping[str, Any]], tokenizer: Any, max_seq_length: int) -> Encoded:
    vocab = tokenizer.get_vocab()
    user = vocab.get(USER)
    roles = {vocab[t] for t in (USER, ASSISTANT, OBSERVATION) if t in vocab}
    out = Encoded([])
    for record in records:
        prompt, completion = record_text(record)
        p = list(tokenizer.encode(prompt, add_special_tokens=False))
        c = list(tokenizer.encode(completion, add_special_tokens=False))
        if len(p) + len(c) <= max_seq_length:
            out.items.append((p + c, len(p)))
            continue
        # Too long: drop the oldest whole messages, as the agent's own compaction does, and keep
        # the system prompt and tools when they leave room; mlx-lm would cut the completion.
        head = p.index(user) if user in p else 0
        if head + len(c) > max_seq_length // 2:
            head = 0
        start = len(p) - (max_seq_length - head - len(c))
        while start < len(p) and p[start] not in roles:
            start += 1
        if start >= len(p):
            out.dropped += 1
            continue
        kept = p[:head] + p[start:]
        out.items.append((kept + c, len(kept)))
        out.truncated += 1
    return out
