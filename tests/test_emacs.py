"""Real Emacs with eglot against the real server, driven as a user would under tmux.

One `emacs -nw` per eglot (Debian's elpa-eglot 1.9, and upstream eglot when GLM_LSP_UPSTREAM_EGLOT
names a directory holding it and the packages it needs), in its own tmux server. The test types
keys with `tmux send-keys` and checks what the user sees with `capture-pane`; it reads buffers and
server state through emacsclient (init.el starts the Emacs server). Each test opens its own
workspace (a git repository: eglot's project.el needs one), so each gets its own `glm-lsp serve`
with its own scripted replies (the README's Scripted replies).

An upstream eglot directory holds eglot.el (github.com/joaotavora/eglot) beside the GNU ELPA
packages it needs on Emacs 28: jsonrpc, eldoc, project, xref, flymake, external-completion and
compat (compat*.el); init.el loads each over the one Emacs ships.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from glm_lsp.glm.parse import tool_call_text

INIT_EL = Path(__file__).parent / "emacs" / "init.el"
WAIT = 90.0  # seconds: the safety net of every wait (a tiny-model request takes a few)
STILL_RESPONSIVE = 5.0  # seconds within which typed keys must show while a request runs
UPSTREAM = os.environ.get("GLM_LSP_UPSTREAM_EGLOT", "")

A_PY = "# GLM: rename foo to double\ndef foo(x):\n    return 2 * x\n"
B_PY = "from pkg.a import foo\n\n\ndef twice(x):\n    return foo(foo(x))\n"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("emacs", "emacsclient", "tmux")),
    reason="needs emacs, emacsclient and tmux (apt-get install emacs-nox elpa-eglot tmux; .ci/run does)",
)


def busy_expr(path: Path) -> str:
    return (
        f'(with-current-buffer "{path.name}" (plist-get (eglot-execute-command'
        ' (eglot--current-server-or-lose) "glm.status" []) :busy))'
    )


def debian_eglot() -> bool:
    return any(Path("/usr/share/emacs/site-lisp/elpa").glob("eglot-*/eglot.el"))


class Emacs:
    """One `emacs -nw` in a private tmux server: keys in, screen out, state via emacsclient."""

    def __init__(self, home: Path, upstream: str) -> None:
        self.home, self.upstream = home, upstream
        self.tmux = ["tmux", "-S", str(home / "tmux.sock")]
        self.sock = home / "emacs-server"

    def start(self, model: Path) -> None:
        home, upstream = self.home, self.upstream
        self.sock.mkdir(mode=0o700)
        init = (
            INIT_EL.read_text()
            .replace("@UPSTREAM@", upstream)
            .replace("@SOCKDIR@", str(self.sock))
            .replace("@PYTHON@", json.dumps(sys.executable))
            .replace("@MODEL@", str(model))
        )
        (home / ".emacs.d").mkdir()
        (home / ".emacs.d" / "init.el").write_text(init)
        env = {**os.environ, "HOME": str(home), "TERM": "xterm-256color"}
        subprocess.run(
            [*self.tmux, "new-session", "-d", "-x", "120", "-y", "40", "emacs", "-nw"],
            env=env,
            check=True,
        )
        # Started when init.el has run: its Emacs server answers (the startup echo-area message
        # may already have replaced init.el's own)
        deadline = time.monotonic() + WAIT
        while not ((self.sock / "server").exists() and self.eval("(featurep 'eglot)") == "t"):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for Emacs to start; the screen:\n{self.screen()}")
            time.sleep(0.1)

    def keys(self, *keys: str) -> None:
        """tmux key names: "C-x", "M-x", "Enter", "C-Space"."""
        subprocess.run([*self.tmux, "send-keys", "-t", "0", *keys], check=True)

    def type(self, text: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", "0", "-l", text], check=True)

    def command(self, name: str) -> None:
        self.keys("M-x")
        self.type(name)
        self.keys("Enter")

    def screen(self) -> str:
        return subprocess.run(
            [*self.tmux, "capture-pane", "-p", "-t", "0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def wait_screen(
        self, seen: Callable[[str], bool], what: str, timeout: float = WAIT, answer_y: bool = True
    ) -> str:
        """Until the screen shows `seen`; a y-or-n question (eglot's "Server wants to edit ...
        Proceed?") is answered yes, as the user would."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if seen(screen):
                return screen
            if answer_y and screen.rstrip().endswith("(y or n)"):
                self.type("y")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; the screen:\n{screen}")
            time.sleep(0.1)

    def eval(self, expr: str) -> str:
        done = subprocess.run(
            ["emacsclient", "-s", str(self.sock / "server"), "--eval", expr],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def wait_eval(self, expr: str, what: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        while (value := self.eval(expr)) == "nil":
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; the screen:\n{self.screen()}")
            time.sleep(0.1)
        return value

    def buffer_text(self, path: Path) -> str:
        text = self.eval(
            f"(with-current-buffer (find-file-noselect {json.dumps(str(path))})"
            " (buffer-substring-no-properties (point-min) (point-max)))"
        )
        return json.loads(text)  # an Emacs string literal reads as JSON for plain text

    def busy(self, path: Path) -> bool:
        """glm.status of the file's server: is a request running?"""
        return self.eval(busy_expr(path)) == "t"

    def close(self) -> None:
        subprocess.run(
            ["emacsclient", "-s", str(self.sock / "server"), "--eval", "(kill-emacs)"],
            capture_output=True,
            timeout=30,
        )
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


@pytest.fixture(scope="module", params=["debian", "upstream"])
def emacs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[Emacs]:
    if request.param == "debian" and not debian_eglot():
        pytest.skip("Debian's eglot is not installed (apt-get install elpa-eglot)")
    if request.param == "upstream" and not (UPSTREAM and (Path(UPSTREAM) / "eglot.el").is_file()):
        pytest.skip(
            "upstream eglot: set GLM_LSP_UPSTREAM_EGLOT to a directory with eglot.el and the "
            "packages it needs (jsonrpc, eldoc, project, xref, flymake, external-completion, compat)"
        )
    home = tmp_path_factory.mktemp(f"emacs-{request.param}")
    session = Emacs(home, UPSTREAM if request.param == "upstream" else "")
    try:
        session.start(tiny_model_dir)
        yield session
    finally:
        session.close()


def workspace(tmp: Path, replies: list[str], emacs: Emacs) -> Path:
    """A git repository with pkg/a.py and pkg/b.py; the next `M-x eglot` gets these replies."""
    root = tmp / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text(A_PY)
    (root / "pkg" / "b.py").write_text(B_PY)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "start"], check=True)
    script = tmp / "replies.json"
    script.write_text(json.dumps(replies))
    emacs.eval(f"(setq glm-test-replies {json.dumps(str(script))})")
    return root


@pytest.fixture
def shutdown_servers(emacs: Emacs) -> Iterator[None]:
    """Each test's server goes at its end (eglot's own shutdown), with its buffers."""
    yield
    emacs.keys("C-g")
    emacs.eval(
        "(progn (dolist (s (let (all) (maphash (lambda (_ ss) (setq all (append ss all)))"
        " eglot--servers-by-project) all)) (ignore-errors (eglot-shutdown s)))"
        " (dolist (b (buffer-list)) (when (buffer-file-name b)"
        " (with-current-buffer b (set-buffer-modified-p nil)) (kill-buffer b))) t)"
    )


def open_with_eglot(emacs: Emacs, path: Path) -> None:
    """C-x C-f the file, M-x eglot, and wait until eglot manages it."""
    emacs.keys("C-x", "C-f")
    emacs.keys("C-a", "C-k")  # the minibuffer's default directory, replaced by the full path
    emacs.type(str(path))
    emacs.keys("Enter")
    emacs.wait_screen(lambda s: path.name in s, f"{path.name} to open")
    emacs.keys("C-x", "1")  # the file alone on screen (an earlier answer may share the frame)
    emacs.command("eglot")
    emacs.wait_eval(
        f'(with-current-buffer "{path.name}" (and (eglot-current-server) t))', "eglot to connect"
    )
    emacs.wait_screen(lambda s: "eglot" in s, "eglot in the mode line")


def code_action(emacs: Emacs, title: str, select: tuple[str, ...] = ("M-<", "C-Space", "M->")):
    """Select (the whole buffer by default), M-x eglot-code-actions, type the title, RET."""
    emacs.keys(*select)
    emacs.command("eglot-code-actions")
    emacs.wait_screen(lambda s: "action" in s.lower().splitlines()[-1], "the code-action prompt")
    emacs.type(title)
    emacs.keys("Enter")


def reply(*calls: str, done: str = "Done.") -> list[str]:
    """One scripted turn making the tool calls, then the closing turn."""
    return ["Editing.</think>" + "".join(calls), f"Finished.</think>{done}"]


def shot(emacs: Emacs, label: str) -> str:
    """What the user sees at this step, printed for `pytest -s` (the closing note's captures)."""
    screen = emacs.screen()
    print(f"--- {label}\n{screen}")
    return screen


def test_glm_comment_refactor_lands_across_two_files(
    emacs: Emacs, tmp_path: Path, shutdown_servers: None
) -> None:
    replies = reply(
        tool_call_text(
            "edit_file",
            {"path": "pkg/a.py", "old_text": "def foo(x):", "new_text": "def double(x):"},
        ),
        tool_call_text(
            "edit_file",
            {
                "path": "pkg/b.py",
                "old_text": "from pkg.a import foo\n\n\ndef twice(x):\n    return foo(foo(x))",
                "new_text": "from pkg.a import double\n\n\ndef twice(x):\n    return double(double(x))",
            },
        ),
        done="foo is now double, in both files.",
    )
    root = workspace(tmp_path, replies, emacs)
    a, b = root / "pkg" / "a.py", root / "pkg" / "b.py"
    open_with_eglot(emacs, a)
    code_action(emacs, "GLM: rename foo to double")
    screen = emacs.wait_screen(
        lambda s: "def double(x):" in s and "GLM:" not in s.split("\n-")[0], "the edit to land"
    )
    shot(emacs, "GLM: comment refactor landed")
    assert "# GLM: rename foo to double" not in screen
    assert emacs.buffer_text(a) == "def double(x):\n    return 2 * x\n"
    assert emacs.buffer_text(b) == B_PY.replace("foo", "double")


def test_code_actions_default_simplify_lands(
    emacs: Emacs, tmp_path: Path, shutdown_servers: None
) -> None:
    replies = reply(
        tool_call_text(
            "edit_file",
            {"path": "pkg/b.py", "old_text": "foo(foo(x))", "new_text": "4 * x"},
        ),
    )
    root = workspace(tmp_path, replies, emacs)
    b = root / "pkg" / "b.py"
    open_with_eglot(emacs, b)
    code_action(emacs, "GLM: Simplify")
    emacs.wait_screen(lambda s: "return 4 * x" in s, "the simplified line")
    shot(emacs, "GLM: Simplify landed")
    assert emacs.buffer_text(b) == B_PY.replace("foo(foo(x))", "4 * x")


LONG_THINKING = "word " * 800  # ~2400 tokens: ten seconds or more of tiny-model decoding here
LONG = [
    LONG_THINKING
    + "</think>"
    + tool_call_text(
        "edit_file", {"path": "pkg/b.py", "old_text": "foo(foo(x))", "new_text": "4 * x"}
    ),
    "Finished.</think>Done.",
]


def test_no_freeze_while_a_long_request_runs(
    emacs: Emacs, tmp_path: Path, shutdown_servers: None
) -> None:
    root = workspace(tmp_path, LONG, emacs)
    b = root / "pkg" / "b.py"
    open_with_eglot(emacs, b)
    code_action(emacs, "GLM: Simplify")
    # The user goes on: M-x and some letters must show at once, while the request still runs.
    typed = time.monotonic()
    emacs.keys("M-x")
    emacs.type("still-responsive")
    emacs.wait_screen(
        lambda s: "still-responsive" in s, "typed keys while a request runs", STILL_RESPONSIVE
    )
    shot(emacs, "typing while the request runs")
    assert time.monotonic() - typed < STILL_RESPONSIVE
    emacs.keys("C-g")
    assert emacs.busy(b), "the request ended before the typing showed: make LONG longer"
    # ... and the long request lands without timing out
    screen = emacs.wait_screen(lambda s: "return 4 * x" in s, "the long request to land")
    shot(emacs, "the long request landed")
    assert "timed out" not in emacs.eval(
        '(with-current-buffer "*Messages*" (buffer-substring-no-properties 1 (point-max)))'
    )
    assert "return 4 * x" in screen


def test_cancel_writes_nothing(emacs: Emacs, tmp_path: Path, shutdown_servers: None) -> None:
    root = workspace(tmp_path, LONG, emacs)
    b = root / "pkg" / "b.py"
    open_with_eglot(emacs, b)
    code_action(emacs, "GLM: Simplify")
    # The user cancels at once: M-: (eglot-execute-command ... "glm.cancel" []); its answer
    # counts the request it stopped. The echo area shows it, but the cancelled request's own
    # message ("... was cancelled; nothing was written") may replace it within one screen poll,
    # so the answer is read where Emacs logs both: *Messages*.
    emacs.keys("M-:")
    emacs.type('(eglot-execute-command (eglot--current-server-or-lose) "glm.cancel" [])')
    emacs.keys("Enter")
    emacs.wait_screen(
        lambda s: "(:cancelled 1" in s or "was cancelled; nothing was written" in s,
        "glm.cancel's answer in the echo area",
    )
    shot(emacs, "after M-: glm.cancel")
    emacs.wait_eval(
        '(with-current-buffer "*Messages*"'
        ' (save-excursion (goto-char 1) (search-forward "(:cancelled 1" nil t)))',
        "glm.cancel's answer in *Messages*",
    )
    deadline = time.monotonic() + WAIT
    while emacs.busy(b):
        assert time.monotonic() < deadline, "the request kept running after glm.cancel"
        time.sleep(0.1)
    assert emacs.buffer_text(b) == B_PY
    assert b.read_text() == B_PY
    assert "4 * x" not in emacs.screen()


EXPLAIN = "foo doubles its argument: it returns 2 * x."


def test_explain_answer_is_shown(emacs: Emacs, tmp_path: Path, shutdown_servers: None) -> None:
    root = workspace(tmp_path, [EXPLAIN], emacs)
    a = root / "pkg" / "a.py"
    open_with_eglot(emacs, a)
    code_action(emacs, "GLM: Explain")
    # showDocument opens the answer beside the code (eglot 1.24); eglot 1.9 shows it as a message
    screen = emacs.wait_screen(lambda s: "foo doubles its argument" in s, "the answer")
    shot(emacs, "GLM: Explain answer")
    assert "def foo(x):" in screen  # the user's code stays in view
