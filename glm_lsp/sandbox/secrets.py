"""What a command must not get from the user: secret environment variables, credential files and
the host's unix sockets (docker, D-Bus, ssh and gpg agents), which talk past any sandbox."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

# Variables commands need to find their tools and speak the user's language; nothing else passes
# unless the user lists it in commandEnv.
_SAFE_NAMES = """PATH HOME USER LOGNAME SHELL LANG LANGUAGE TERM COLORTERM TZ NO_COLOR FORCE_COLOR COLUMNS
    LINES VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV PYTHONPATH PYTHONHOME PYTHONDONTWRITEBYTECODE
    PYENV_ROOT PYENV_VERSION UV_PYTHON JAVA_HOME GRADLE_USER_HOME MAVEN_HOME M2_HOME GOPATH GOROOT
    GOCACHE GOMODCACHE GOFLAGS CARGO_HOME RUSTUP_HOME RUSTUP_TOOLCHAIN NVM_DIR NODE_PATH
    NODE_OPTIONS GEM_HOME GEM_PATH BUNDLE_PATH DOTNET_ROOT ANDROID_HOME CC CXX CFLAGS CXXFLAGS
    LDFLAGS PKG_CONFIG_PATH LD_LIBRARY_PATH SSL_CERT_FILE SSL_CERT_DIR REQUESTS_CA_BUNDLE
    XDG_CONFIG_HOME XDG_CACHE_HOME XDG_DATA_HOME CI"""
SAFE_ENV = frozenset(_SAFE_NAMES.split())
SAFE_PREFIXES = ("LC_",)
# Names that look like secrets never pass, whatever commandEnv lists.
SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|COOKIE|PRIVATE|(^|_)AUTH(_|$)"
    r"|^AWS_|^AZURE_|^GCP_|^GOOGLE_|^SSH_|^GPG_|^GNUPG|^DOCKER_|^KUBE|^VAULT_|^NPM_CONFIG_",
    re.IGNORECASE,
)


def looks_secret(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def command_env(
    environ: Mapping[str, str], listed: Iterable[str], never: Iterable[str]
) -> tuple[dict[str, str], list[str]]:
    """The environment a command gets, and the listed names refused because they look secret."""
    never = set(never)
    refused = sorted({n for n in listed if looks_secret(n) or n in never})
    wanted = SAFE_ENV | (set(listed) - set(refused))
    env = {
        k: v
        for k, v in environ.items()
        if (k in wanted or k.startswith(SAFE_PREFIXES)) and k not in never and k not in refused
    }
    return env, refused


# Relative to $HOME: credentials and agents' sockets.
HOME_SECRETS = (
    ".ssh", ".aws", ".azure", ".gnupg", ".netrc", ".docker", ".kube", ".config/gh",
    ".config/gcloud", ".config/hub", ".git-credentials", ".password-store",
    ".local/share/keyrings", ".pypirc", ".npmrc", ".cargo/credentials", ".cargo/credentials.toml",
    ".vault-token", ".local/state/glm-lsp", ".cache/glm-lsp",
)  # fmt: skip
SOCKET_DIRS = ("/run", "/var/run")  # docker, containerd, D-Bus, systemd: scanned for sockets
SCAN_LIMIT = 5000  # entries looked at under SOCKET_DIRS


def hidden_paths(environ: Mapping[str, str], extra: Iterable[str]) -> list[str]:
    """Existing paths a command must not read or connect to, each also as its real path."""
    home = Path(environ.get("HOME") or Path.home())
    found: list[Path] = [home / rel for rel in HOME_SECRETS]
    for var, rel in (("XDG_STATE_HOME", "glm-lsp"), ("XDG_CACHE_HOME", "glm-lsp")):
        if environ.get(var):
            found.append(Path(environ[var]) / rel)
    for var in ("XDG_RUNTIME_DIR", "SSH_AUTH_SOCK", "GNUPGHOME"):
        if environ.get(var):
            found.append(Path(environ[var]))
    found += [Path(p).expanduser() for p in extra]
    found += [Path(p) for p in host_sockets()]
    out: list[str] = []
    for path in found:
        for form in (str(path), os.path.realpath(path)):
            if form != "/" and form not in out and os.path.lexists(form):
                out.append(form)
    return out


def host_sockets() -> list[str]:
    """Unix sockets under /run: bubblewrap's own network namespace does not cover them."""
    found: list[str] = []
    seen = 0
    for top in SOCKET_DIRS:
        if os.path.realpath(top) != top:  # /var/run -> /run: scanned once
            continue
        for base, dirs, names in os.walk(top):
            for name in names:
                seen += 1
                path = os.path.join(base, name)
                try:
                    if stat.S_ISSOCK(os.lstat(path).st_mode):
                        found.append(path)
                except OSError:
                    continue
            seen += len(dirs)
            if seen > SCAN_LIMIT:
                return found
    return found
