"""User-facing text reads on its own: no help text points at a design document users never get."""

from __future__ import annotations

import argparse
import re

from glm_lsp.cli import build_parser


def test_help_never_cites_a_design_section() -> None:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    texts = [parser.format_help(), *(p.format_help() for p in sub.choices.values())]
    for text in texts:
        assert not re.search(r"design|section \d", text, re.IGNORECASE), text
