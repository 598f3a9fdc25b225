"""Editor sessions as training data: the preserved-thinking log exported as JSONL, and LoRA on it.

`conversation` rebuilds what the model saw for every completion, `redact` keeps secrets and
machine paths out, `export` writes `chat` or `completions` JSONL, `dataset` turns either back into
prompt-masked token sequences, and `finetune` runs mlx-lm's LoRA trainer on them.
"""
