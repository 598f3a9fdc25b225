"""Keeping the API key (and other secrets of the environment) out of every message a user, an
editor or a log sees: error texts, and as a last resort the command line's tracebacks."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from glm_lsp.runtime.base import BackendError

MASK = "***"
_MIN_SECRET = 6  # shorter values are too likely to be ordinary words to mask everywhere
# Variables whose values may be secret even when not named by apiKeyEnv (GLM_LSP_TOKEN, ...).
_SECRET_NAME = re.compile(r"(?i)(key|token|secret|passw(or)?d)$")


def api_key(raw: str, env_name: str) -> str | None:
    """The key as sent: surrounding whitespace stripped (a CRLF key file leaves a trailing
    `\\r`); None when empty; BackendError, naming the variable and never the value, when
    what remains cannot be an HTTP header value."""
    key = raw.strip()
    if not key:
        return None
    if not all(0x21 <= ord(c) <= 0x7E for c in key):
        raise BackendError(
            f"the API key in ${env_name} holds a space, line break or non-ASCII character "
            "that an HTTP header cannot carry; fix the variable's value"
        )
    return key


def mask(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with each secret, and its escaped spelling as repr() shows it, replaced by ***."""
    forms: set[str] = set()
    for secret in secrets:
        if secret and len(secret.strip()) >= _MIN_SECRET:
            forms |= {secret, secret.strip(), repr(secret)[1:-1], repr(secret.strip())[1:-1]}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text


def environment_secrets(
    names: Iterable[str | None] = (), environ: Mapping[str, str] | None = None
) -> list[str]:
    """Values of the named variables, and of any variable named like a key, token, secret or
    password: what a traceback printed by this process must not show."""
    env = os.environ if environ is None else environ
    wanted = {n for n in names if n}
    return [v for k, v in env.items() if k in wanted or _SECRET_NAME.search(k)]
