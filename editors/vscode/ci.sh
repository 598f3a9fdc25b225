#!/usr/bin/env bash
# Builds, tests and packages the VS Code extension from a clean checkout, then checks that the
# .vsix holds the compiled extension. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")"

major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "editors/vscode/ci.sh: Node 20 or newer is needed (found $(node -v))." >&2
  exit 1
fi

echo "== npm ci"
npm ci --no-audit --no-fund

echo "== compile"
rm -rf out
npm run compile

echo "== unit tests"
node --test out/test/

echo "== package"
version=$(node -p 'require("./package.json").version')
vsix="glm-lsp-$version.vsix"
rm -f "$vsix"
# vsce runs `vscode:prepublish` (compile) itself; no repository URL is published yet.
npx --no-install vsce package --allow-missing-repository --out "$vsix"

echo "== check $vsix"
if command -v unzip >/dev/null 2>&1; then
  listing=$(unzip -Z1 "$vsix")
else
  listing=$(python3 -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$vsix")
fi
for required in extension/package.json extension/out/extension.js extension/node_modules/vscode-languageclient/node.js; do
  if ! grep -qx "$required" <<<"$listing"; then
    echo "editors/vscode/ci.sh: $vsix lacks $required" >&2
    exit 1
  fi
done
if grep -q '^extension/out/test/' <<<"$listing"; then
  echo "editors/vscode/ci.sh: $vsix must not ship the tests (see .vscodeignore)" >&2
  exit 1
fi
echo "ok: $vsix ($(wc -c <"$vsix") bytes, $(grep -c . <<<"$listing") files)"
