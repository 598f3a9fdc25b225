"""Harness for the VS Code end-to-end test: a real code-server with the packaged .vsix, a copy of
the demo workspace, the real glm-lsp server on the tiny model, and Debian's chromium.

run.sh prepares everything and passes it in through E2E_* environment variables. On a failure
the Playwright trace, a screenshot and the logs land in editors/vscode/e2e/artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

HERE = Path(__file__).resolve().parent
SCREENSHOTS = Path(os.environ.get("E2E_SCREENSHOTS", HERE / "screenshots"))
ARTIFACTS = HERE / "artifacts"
WAIT_MS = 30_000  # one UI step
MODEL_WAIT_MS = 240_000  # one agent request on the tiny model (CPU, shared machine)
STATUS_ITEM = '[id="glm-lsp.glm-lsp.glm-lsp.status"]'
FAILED: list[str] = []  # tests that failed: the fixture then keeps the trace and logs


def need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run this test through editors/vscode/e2e/run.sh", 2)
    return value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def long_reply() -> str:
    """A long, varied reasoning for GLM: Cancel (varied so speculative drafts cannot skip it)."""
    steps = (f"step {i}: item {i * 7 % 101} at rate {i % 13}/{i % 17 + 3}." for i in range(2000))
    return "Checking every item in turn. " + " ".join(steps) + "</think>Done."


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        FAILED.append(item.name)
    return report


class Workbench:
    """A user at the keyboard of VS Code in the browser: palette, editors, notifications."""

    def __init__(self, page: Page, root: Path) -> None:
        self.page = page
        self.root = root

    def shot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))

    def quick_input(self) -> Locator:
        box = self.page.locator(".quick-input-widget input.input")
        expect(box).to_be_visible(timeout=WAIT_MS)
        return box

    def palette(self, text: str, *, pick: str | None = None) -> None:
        """F1, type `text` (a command title with `>`, a file name or `:line` without), Enter."""
        self.page.keyboard.press("F1")
        box = self.quick_input()
        box.fill(text)
        if pick is not None:
            row = self.page.locator(".quick-input-list .monaco-list-row", has_text=pick).first
            expect(row).to_be_visible(timeout=WAIT_MS)
            expect(self.page.locator(".quick-input-list .monaco-list-row.focused")).to_contain_text(
                pick, timeout=WAIT_MS
            )
        self.page.keyboard.press("Enter")

    def command(self, title: str) -> None:
        self.palette(f">{title}", pick=title)

    def close_all_editors(self) -> None:
        self.command("View: Close All Editor Groups")
        expect(self.page.locator(".tab")).to_have_count(0, timeout=WAIT_MS)

    def open_file(self, rel: str) -> None:
        self.palette(rel, pick=Path(rel).name)
        expect(self.active_tab()).to_contain_text(Path(rel).name, timeout=WAIT_MS)

    def active_tab(self) -> Locator:
        return self.page.locator(".editor-group-container.active .tab.active")

    def select_lines(self, first: int, last: int) -> None:
        """Lines first..last (1-based) of the active editor, whole lines, as a user would."""
        self.palette(f":{first}")
        self.page.keyboard.press("Home")
        self.page.keyboard.press("Home")  # past the indentation to column 1
        for _ in range(last - first):
            self.page.keyboard.press("Shift+ArrowDown")
        self.page.keyboard.press("Shift+End")
        selection = self.page.locator('[id="status.editor.selection"]')
        expect(selection).to_contain_text(f"Ln {last}", timeout=WAIT_MS)
        expect(selection).to_contain_text("selected", timeout=WAIT_MS)

    def editor_text(self) -> str:
        """The active editor's visible text, whitespace collapsed (word wrap splits lines)."""
        lines = self.page.locator(".editor-group-container.active .monaco-editor .view-lines")
        return " ".join(lines.first.inner_text().split())

    def whole_editor_text(self) -> str:
        """All of the active editor's text: Monaco renders only the visible lines, so page down."""
        self.page.locator(".editor-group-container.active .monaco-editor .view-lines").first.click()
        self.page.keyboard.press("Control+Home")
        seen: list[str] = []
        for _ in range(40):
            text = self.editor_text()
            if seen and text == seen[-1]:
                break
            seen.append(text)
            self.page.keyboard.press("PageDown")
            time.sleep(0.2)
        return " ".join(seen)

    def wait_editor_text(self, pattern: str, timeout_ms: int = WAIT_MS) -> str:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            text = self.editor_text()
            if re.search(pattern, text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the active editor never showed /{pattern}/; it shows:\n{text}"
                )
            time.sleep(0.25)

    def notification(self, text: str | re.Pattern[str], timeout_ms: int = WAIT_MS) -> Locator:
        toast = self.page.locator(".notification-toast", has_text=text).last
        expect(toast).to_be_visible(timeout=timeout_ms)
        return toast

    def clear_notifications(self) -> None:
        self.command("Notifications: Clear All Notifications")
        expect(self.page.locator(".notification-toast")).to_have_count(0, timeout=WAIT_MS)

    def status_item(self) -> Locator:
        return self.page.locator(STATUS_ITEM)

    def output_text(self) -> str:
        view = self.page.locator(".part.panel .monaco-editor .view-lines")
        return " ".join(view.first.inner_text().split())


# What CI prints of a failure: the artifacts stay on its machine, so the log tails that tell
# "the request never left" from "the server never answered" go to stdout too.
LOG_TAILS = (
    ("GLM Server.log", 40, ("glm/stream", "$/progress")),  # the LSP trace, less the stream
    ("GLM.log", 15, ()),  # what the user saw in the GLM output channel
    ("remoteexthost.log", 15, ()),  # the extension host: activation and crashes
)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """After a failure, the tails of the logs the fixture kept in ARTIFACTS."""
    if not FAILED:
        return
    for name, count, noise in LOG_TAILS:
        for path in sorted((ARTIFACTS / "logs").rglob(f"*{name}")):
            lines = path.read_text(errors="replace").splitlines()
            kept = [line[:240] for line in lines if not any(n in line for n in noise)]
            terminalreporter.section(f"last {count} lines of {path.name} (of {len(lines)})")
            terminalreporter.write_line("\n".join(kept[-count:]))


@pytest.fixture(scope="session")
def vscode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workbench]:
    entry = need("E2E_CODE_SERVER")
    vsix = need("E2E_VSIX")
    python = need("E2E_GLM_PYTHON")
    model = need("E2E_TINY_MODEL")
    chromium = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
    node = os.environ.get("E2E_NODE", "node")

    tmp = tmp_path_factory.mktemp("vscode")
    root = tmp / "shop-demo"
    demo = Path(need("E2E_DEMO_WORKSPACE"))
    shutil.copytree(demo, root, ignore=shutil.ignore_patterns("__pycache__", ".glm-lsp"))
    replies = [*json.loads((HERE / "replies.json").read_text()), long_reply()]
    (tmp / "replies.json").write_text(json.dumps(replies))
    user = tmp / "user-data"
    (user / "User").mkdir(parents=True)
    settings = {
        "security.workspace.trust.enabled": False,
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": False,
        "extensions.autoCheckUpdates": False,
        "extensions.autoUpdate": False,
        "telemetry.telemetryLevel": "off",
        "git.enabled": False,
        "editor.minimap.enabled": False,
        "glm.serverCommand": [python, "-m", "glm_lsp.cli", "serve"],
        "glm.model": model,
        "glm.scriptedReplies": str(tmp / "replies.json"),
        "glm.thinking": "enabled",
        "glm.review": "preview",
        "glm.stateDir": str(tmp / "state"),
        "glm.trace.server": "messages",
    }
    (user / "User" / "settings.json").write_text(json.dumps(settings, indent=2))
    extensions = tmp / "extensions"
    log_path = tmp / "code-server.log"
    base = [node, entry, "--config", str(tmp / "config.yaml"), "--user-data-dir", str(user)]
    base += ["--extensions-dir", str(extensions)]
    subprocess.run([*base, "--install-extension", vsix], check=True, timeout=120)

    # The server attaches to the per-user host (the default): this run's own, in its own runtime
    # dir, so it never meets the user's host, and stopped at the end.
    runtime = tmp / "run"
    runtime.mkdir(mode=0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    os.environ.pop("GLM_LSP_HOST", None)
    port = free_port()
    log = log_path.open("w")
    serve = ["--auth", "none", "--bind-addr", f"127.0.0.1:{port}", "--disable-telemetry"]
    serve += ["--disable-update-check", "--disable-workspace-trust", str(root)]
    server = subprocess.Popen(
        [*base, *serve],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/?folder={root}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
            break
        except (urllib.error.URLError, OSError):
            if server.poll() is not None or time.monotonic() > deadline:
                log.close()
                raise RuntimeError(f"code-server did not start:\n{log_path.read_text()}") from None
            time.sleep(0.5)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.tracing.start(screenshots=True, snapshots=True)
        page = context.new_page()
        page.goto(url, timeout=60_000)
        expect(page.locator(".monaco-workbench")).to_be_visible(timeout=90_000)
        bench = Workbench(page, root)
        try:
            yield bench
        finally:
            failed = bool(FAILED)
            if failed:
                shutil.rmtree(ARTIFACTS, ignore_errors=True)
                ARTIFACTS.mkdir(parents=True)
                page.screenshot(path=str(ARTIFACTS / "failure.png"))
                context.tracing.stop(path=str(ARTIFACTS / "trace.zip"))
            else:
                context.tracing.stop()
            browser.close()
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
            subprocess.run([python, "-m", "glm_lsp.cli", "host", "stop"], timeout=60, check=False)
            log.close()
            if failed:
                shutil.copy(log_path, ARTIFACTS / "code-server.log")
                for path in (user / "logs").rglob("*.log"):
                    dest = ARTIFACTS / "logs" / path.relative_to(user / "logs")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, dest)
                print(f"\nE2E failure artifacts (trace, screenshot, logs): {ARTIFACTS}")
                print("  view the trace: playwright show-trace", ARTIFACTS / "trace.zip")
