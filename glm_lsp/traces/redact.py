"""Keep secrets and machine paths out of exported traces.

Applied to every string of the exported messages before rendering, so a redacted record still
renders consistently: prompt and completion come from the same redacted messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from glm_lsp.traces.detectors import redact_lines

SECRET = "[REDACTED_SECRET]"
ABS_PATH = "[ABS_PATH]"
TOOL_RESULT = "[tool result redacted]"

# Well-known key shapes; the prefix says what kind of key it was, which is not itself secret.
_KEY_PATTERNS = [
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
    r"\bsk-(?:proj-|ant-|or-)?[A-Za-z0-9_\-]{16,}",  # OpenAI, Anthropic, OpenRouter
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
    r"\bgithub_pat_[A-Za-z0-9_]{30,}",
    r"\bglpat-[A-Za-z0-9_\-]{20,}",  # GitLab
    r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face
    r"\bnpm_[A-Za-z0-9]{30,}",  # npm access tokens
    r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack
    r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe secret and restricted keys, any length
    r"\bwhsec_[A-Za-z0-9]{20,}",  # Stripe webhook signing secret
    r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
    r"\bAIza[0-9A-Za-z_\-]{35}",  # Google API key
    r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",  # JWT
]
_KEYS = re.compile("|".join(f"(?:{p})" for p in _KEY_PATTERNS), re.DOTALL)
# `Authorization: Bearer x`, `api_key = "x"`, `SECRET_TOKEN=x`: keep the name, drop the value.
# Only values with both letters and digits count, so code like `max_tokens=limit_of_tokens` stays.
_NAMED = re.compile(
    r"(?i)(\bbearer\s+|"
    r"\b[\w-]*(?:api[_-]?key|secret|token|passw(?:or)?d|credential)[\w-]*[\"']?\s*[:=]\s*[\"']?)"
    r"([A-Za-z0-9_\-+/=]{12,})"
)
# `scheme://user:password@host`: the password goes, the rest of the URL stays readable.
_URL_AUTH = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@]*:)([^\s/@]+)(@)")
# Env-file and shell style `DB_PASSWORD=x`: any value, as a name ending so never holds code
# (`MAX_TOKENS=` and `PWD=` do not end so).
_ENV_ASSIGN = re.compile(
    r"(\b[A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_KEY|PRIVATE_KEY|SECRET_KEY)=)"
    r"(?![$\s])(\"[^\"\n]*\"|'[^'\n]*'|[^\s\"'`;|]+)"
)
_PASSWORD_LINE = r"(?im)^[ \t]*(?:export[ \t]+)?[\w.\-]*pass(?:word|wd)[ \t]*=[ \t]*"
# Credentials that only their context marks: the named group `s` goes, the rest stays readable.
_IN_CONTEXT = [
    re.compile(p)
    for p in (
        # `Authorization: Basic dXNlcjpwdw==` (base64 of user:password), also Proxy-Authorization
        r"(?i)authorization[\"']?\s*[:=]\s*[\"']?basic\s+(?P<s>[A-Za-z0-9+/_\-]{4,}=*)",
        # Azure connection strings: AccountKey=...; SharedAccessKey=...;
        r"(?i)\b(?:AccountKey|SharedAccessKey)\s*=\s*(?P<s>[^;\s\"']+)",
        # .netrc: `machine host login user password pw` (one line or several), `default ...`
        r"(?i)\b(?:machine\s+\S+(?:\s+(?:login|account|port)\s+\S+)*"
        r"|default(?:\s+(?:login|account|port)\s+\S+)+)\s+password\s+(?P<s>\S+)",
        # mysql and friends: the password glued to -p, or --password=
        r"\b(?:mysql|mysqldump|mysqladmin|mysqlimport|mysqlshow|mysqlcheck|mariadb)\b[^\n]*?"
        r"\s(?:-p|--password=)(?P<s>'[^'\n]*'|\"[^\"\n]*\"|[^\s'\"]+)",
        # docker's config.json: "auths": {"registry": {"auth": "base64(user:password)"}}
        r"(?i)\"(?:auth|identitytoken|registrytoken)\"\s*:\s*\"(?P<s>[A-Za-z0-9+/_\-]{8,}=*)\"",
        # curl -u user:password, --user user:password
        r"\bcurl\b[^\n]*?\s(?:-u|--user)[\s=]*[\"']?[^\s:\"']*:(?P<s>[^\s\"'@]+)",
        # env, ini and properties lines in any case: `db_password=x`, `smtp_passwd = "x"`; not a
        # keyword argument inside code (`f(db_password=db_password)`), nor a `$REFERENCE`
        _PASSWORD_LINE + r"(?P<q>[\"'])(?P<s>(?:(?!(?P=q))[^\n])+)(?P=q)",
        _PASSWORD_LINE
        + r"(?!(?:None|null|nil|true|false)\s*$)(?P<s>(?![$%{<\"'])[^\s\"'`;|()\[\]]+)(?=\s|$)",
    )
]
_SLACK_HOOK = re.compile(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[\w/\-]+")
# Roots that name a person or a machine; system paths (/usr/bin/env, /dev/null) stay.
_PRIVATE_ROOTS = r"home|Users|root|tmp|private|var/folders|mnt|media|Volumes|workspace"
_PATH_CHARS = r"[^\s\"'`<>|:;,()\[\]{}]*"
_ABS = re.compile(
    rf"(?<![\w.~\-])/(?:{_PRIVATE_ROOTS})(?=/|\b){_PATH_CHARS}"
    rf"|\b[A-Za-z]:\\(?:Users|Documents and Settings)\\{_PATH_CHARS}"
)
_SECRET_ENV = re.compile(r"(?i)(key|token|secret|password)$")


def _key_like(value: str) -> bool:
    return (
        len(value) >= 12
        and not any(c.isspace() for c in value)
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
    )


def _named_value(match: re.Match[str]) -> str:
    return match.group(1) + SECRET if _key_like(match.group(2)) else match.group(0)


def _in_context(match: re.Match[str]) -> str:
    whole, start = match.group(0), match.start()
    return whole[: match.start("s") - start] + SECRET + whole[match.end("s") - start :]


class Redactor:
    """Replaces secrets with SECRET, the workspace root with `.`, other private paths with
    ABS_PATH; with `results`, every tool result with TOOL_RESULT."""

    def __init__(
        self,
        workspace: Path,
        *,
        api_key_env: str | None = None,
        results: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.results = results
        self.count = 0
        values = {env.get(api_key_env or "", "")} - {""}
        # Any key-like variable of this environment could have been pasted into a request; only
        # values that look like keys, so `SOME_KEY=default` does not redact the word everywhere.
        values |= {v for k, v in env.items() if _SECRET_ENV.search(k) and _key_like(v)}
        self._values = sorted((v for v in values if len(v.strip()) >= 6), key=len, reverse=True)
        roots = {str(workspace), str(workspace.resolve())}
        self._roots = [
            re.compile(rf"(?<![\w.~\-]){re.escape(r)}(?=/|\\|$|[^\w.\-])")
            for r in sorted(roots, key=len, reverse=True)
            if r not in ("/", "")
        ]

    def text(self, value: str) -> str:
        out = value
        for secret in self._values:
            out = out.replace(secret, SECRET)
        out = _KEYS.sub(SECRET, out)
        out = _SLACK_HOOK.sub(SECRET, out)
        out = _URL_AUTH.sub(rf"\1{SECRET}\3", out)
        out = _ENV_ASSIGN.sub(rf"\1{SECRET}", out)
        out = _NAMED.sub(_named_value, out)
        for pattern in _IN_CONTEXT:
            out = pattern.sub(_in_context, out)
        out = redact_lines(out, SECRET)  # detect-secrets: the formats these patterns miss
        for root in self._roots:
            out = root.sub(".", out)
        out = _ABS.sub(ABS_PATH, out)
        if out != value:
            self.count += 1
        return out

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value

    def messages(self, messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for m in messages:
            m = dict(m)
            if m.get("role") == "tool" and self.results:
                m["content"] = TOOL_RESULT
            out.append(self.value(m))
        return out
