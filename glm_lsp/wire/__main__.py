"""`python -m glm_lsp.wire --schema | --typescript [--write]`: print (or write) the generated
JSON schema and VS Code types."""

from __future__ import annotations

import argparse
import sys

from glm_lsp.wire.schema import SCHEMA_PATH, render
from glm_lsp.wire.typescript import TS_PATH, render_typescript


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m glm_lsp.wire")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--schema", action="store_true", help="the JSON schema")
    what.add_argument("--typescript", action="store_true", help="editors/vscode/src/wire.ts")
    parser.add_argument("--write", action="store_true", help="write the checked-in file")
    args = parser.parse_args()
    text, path = (render(), SCHEMA_PATH) if args.schema else (render_typescript(), TS_PATH)
    if args.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
