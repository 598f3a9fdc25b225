"""The per-user host: one loaded model, every conversation's KV cache, the OpenAI endpoint."""
