"""`glm-lsp export` keeps the secrets detect-secrets knows, and the ones our patterns add, out of
the exported traces; the file it writes is readable by its owner only."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from glm_lsp.state_files import prepare_state_dir
from glm_lsp.traces.redact import SECRET, Redactor

STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc" * 4  # today's keys run past 24 characters
RESTRICTED = "rk_live_51H8x2bCdEfGhIjKlMnOpQrStUvWx"
DB_PASSWORD = "hunter"  # short and all letters: no "key-like" heuristic would catch it
ENV_PASSWORD = "correcthorse"
SLACK = "https://hooks.slack.com/services/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"
NPM = "npm_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
NETRC_PASSWORD = "letmein"
DOCKER_AUTH = "YWxpY2U6aHVudGVyMg=="  # base64 of alice:hunter2
SECRETS = [STRIPE, RESTRICTED, DB_PASSWORD, ENV_PASSWORD, SLACK, "T0A1B2C3D/B0A1B2C3D"]
SECRETS += [NPM, NETRC_PASSWORD, DOCKER_AUTH]

SETTINGS_FILE = f"""\
STRIPE_KEY = '{STRIPE}'
DATABASE_URL = "postgres://app:{DB_PASSWORD}@db.internal:5432/app"
PASSWORD={ENV_PASSWORD}
ALERTS = "{SLACK}"
MAX_TOKENS=4096
# cat ~/.netrc ~/.docker/config.json; npm token list
machine api.example.com login alice password {NETRC_PASSWORD}
{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{DOCKER_AUTH}"}}}}}}
{NPM}
"""


def write_log(root: Path) -> None:
    root.mkdir(parents=True)
    state = prepare_state_dir(root / ".glm-lsp")  # made by glm-lsp: a foreign one is not read
    messages = [
        {"role": "user", "content": f"Rotate {RESTRICTED} and check settings.py"},
        {
            "role": "assistant",
            "content": "Reading it.",
            "reasoning_content": f"The webhook {SLACK} and postgres://app:{DB_PASSWORD}@db leak.",
            "tool_calls": [
                {"type": "function", "function": {"name": "read_file", "arguments": {"path": "s"}}}
            ],
        },
        {"role": "tool", "content": SETTINGS_FILE},
        {"role": "assistant", "content": f"Set PASSWORD={ENV_PASSWORD} in .env.", "reasoning_content": "Done."},
    ]  # fmt: skip
    record = {"v": 1, "turn": 1, "time": "2025-03-01T00:00:00+00:00", "command": "glm.refactor",
              "thinking": "enabled", "messages": messages, "stats": {}}  # fmt: skip
    (state / "thinking.jsonl").write_text(json.dumps(record) + "\n")


def export(root: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "glm_lsp.cli", "export", str(root), "--out", str(out), *flags]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fmt", ["chat", "completions"])
def test_export_redacts_stripe_url_password_env_password_and_slack_hook(
    tmp_path: Path, fmt: str
) -> None:
    root = tmp_path / "ws"
    write_log(root)
    out = tmp_path / "traces.jsonl"
    proc = export(root, out, "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.count("\n") == 2  # one line per completion
    for secret in SECRETS:
        assert secret not in text, secret
    # What is not secret stays readable.
    assert "postgres://app:[REDACTED_SECRET]@db.internal:5432/app" in text
    assert f"PASSWORD={SECRET}" in text and "MAX_TOKENS=4096" in text
    assert f"STRIPE_KEY = '{SECRET}'" in text and f"Rotate {SECRET} and" in text


def test_export_file_is_private(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write_log(root)
    out = tmp_path / "new.jsonl"
    old_umask = os.umask(0o022)
    try:
        assert export(root, out).returncode == 0
        existing = tmp_path / "existing.jsonl"
        existing.write_text("old\n")
        existing.chmod(0o644)
        assert export(root, existing).returncode == 0
    finally:
        os.umask(old_umask)
    for path in (out, existing):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
    assert existing.read_text() == out.read_text()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key: {RESTRICTED}", f"key: {SECRET}"),
        (f"curl {SLACK} -d x", f"curl {SECRET} -d x"),
        ("redis://:pw@cache:6379/0", f"redis://:{SECRET}@cache:6379/0"),
        ("mysql://app:s3cr3t@localhost/db", f"mysql://app:{SECRET}@localhost/db"),
        (f"publish with {NPM}", f"publish with {SECRET}"),
        (
            "curl -H 'Authorization: Basic YWxpY2U6aHVudGVyMg==' https://x",
            f"curl -H 'Authorization: Basic {SECRET}' https://x",
        ),
        (
            "AccountName=acct;AccountKey=shortKey+abc/def==;EndpointSuffix=core.windows.net",
            f"AccountName=acct;AccountKey={SECRET};EndpointSuffix=core.windows.net",
        ),
        (
            "machine db\n  login app\n  password pw1",
            f"machine db\n  login app\n  password {SECRET}",
        ),
        ("mysql -u root -pS3cretPass mydb", f"mysql -u root -p{SECRET} mydb"),
        ("mysqldump -u app --password=hunter app", f"mysqldump -u app --password={SECRET} app"),
        ('{"auth": "YWxpY2U6aHVudGVyMg=="}', f'{{"auth": "{SECRET}"}}'),
        (
            "curl -u alice:hunter2 https://api.example.com",
            f"curl -u alice:{SECRET} https://api.example.com",
        ),
        ("db_password=hunter", f"db_password={SECRET}"),
        ("  smtp_passwd = 'pass word'", f"  smtp_passwd = '{SECRET}'"),
        ('export DB_PASSWORD="two words"', f"export DB_PASSWORD={SECRET}"),
        ('password = "hunter2"', f'password = "{SECRET}"'),  # detect-secrets' keyword plugin
        # Code, references and ordinary settings stay.
        ("PASSWORD=$DB_PASSWORD", None),
        ("f(password=password)", None),
        ("connect(host, db_password=db_password)", None),
        ("db_password=$DB_PASSWORD", None),
        ("mysql -u root -p mydb", None),
        ('{"auth": "none"}', None),
        ("Use basic auth or a token.", None),
        ("The default password is set at install.", None),
        ("password = None", None),
        ("MAX_TOKENS=4096 PWD=/srv", None),
        ("git@github.com:org/repo.git", None),
        ("commit 3f786850e387550fdab836ed7e6dc881de23001b", None),
    ],
)
def test_redactor_with_detect_secrets(text: str, expected: str | None, tmp_path: Path) -> None:
    redactor = Redactor(tmp_path / "ws", environ={})
    assert redactor.text(text) == (text if expected is None else expected)
