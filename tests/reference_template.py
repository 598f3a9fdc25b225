"""The official GLM-4.7 chat template from ../shared, rendered the way transformers renders it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "reference" / "glm47_chat_template.jinja"


def reference_render(
    messages: list[dict[str, Any]], tools: list[dict] | None = None, **kw: Any
) -> str:
    if not REFERENCE.exists():
        pytest.skip("../shared/reference/glm47_chat_template.jinja is absent")
    from transformers.utils.chat_template_utils import render_jinja_template

    # What mlx_lm.server (process_message_content) and vLLM do before templating: a null content,
    # the OpenAI shape of a pure tool call, becomes "" (Jinja alone would print 'None').
    messages = [m | {"content": ""} if m.get("content", "") is None else m for m in messages]
    rendered, _ = render_jinja_template(
        [messages], tools=tools, chat_template=REFERENCE.read_text(), **kw
    )
    return rendered[0]
