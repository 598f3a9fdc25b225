"""detect-secrets' plugins as a line scanner for export redaction.

Only the plugins that look for a known secret format (Stripe, Slack, URL credentials, quoted
`password = "..."`, cloud keys, ...): the entropy and public-IP plugins would also redact commit
hashes, digests and addresses in ordinary code. Each plugin's `analyze_string` only matches text,
so nothing is verified over the network and no baseline file is read or written.
"""

from __future__ import annotations

from functools import cache, lru_cache

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import BasePlugin

_SKIPPED = frozenset({"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"})
# A finding is replaced wherever it occurs in its line: shorter values (a one-letter URL
# password) are left to the position-exact patterns of redact.py.
_MIN_VALUE = 4
_MIN_LINE = 8


@cache
def _plugins() -> tuple[BasePlugin, ...]:
    classes = get_mapping_from_secret_type_to_class().values()
    return tuple(
        c() for c in sorted(classes, key=lambda c: c.__name__) if c.__name__ not in _SKIPPED
    )


@lru_cache(maxsize=1 << 16)  # code repeats lines; a trace repeats whole files
def line_secrets(line: str, marker: str) -> tuple[str, ...]:
    """Secret values detect-secrets finds in one line, longest first; values holding `marker`
    (what an earlier pattern already put there) are not secrets."""
    if len(line) < _MIN_LINE:
        return ()
    found = {
        value
        for plugin in _plugins()
        for value in plugin.analyze_string(line)
        if len(value) >= _MIN_VALUE and marker not in value
    }
    return tuple(sorted(found, key=len, reverse=True))


def redact_lines(text: str, replacement: str) -> str:
    """`text` with every detect-secrets finding replaced, line by line."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        for value in line_secrets(line, replacement):
            line = line.replace(value, replacement)
        lines[i] = line
    return "\n".join(lines)
