"""One child process: output interleaved, streamed, bounded in memory; killed as a whole tree on
cancel or timeout."""

from __future__ import annotations

import codecs
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from glm_lsp.runtime.base import Cancelled

HEAD_CHARS = 8_000  # the start of the output (what ran, first errors)
TAIL_CHARS = 24_000  # the end (test summaries come last)
STREAM_CHARS = 200_000  # what the editor is sent live; the tool result keeps head and tail
POLL_S = 0.05


@dataclass
class Finished:
    exit_code: int
    output: str  # head and tail, with a note of what was cut
    timed_out: bool
    cut_chars: int


class Bounded:
    """Keeps the first HEAD_CHARS and the last TAIL_CHARS of a stream, counting what falls out."""

    def __init__(self, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> None:
        self.head_limit, self.tail_limit = head, tail
        self.head: list[str] = []
        self.head_len = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.dropped = 0

    def add(self, text: str) -> None:
        room = self.head_limit - self.head_len
        if room > 0:
            self.head.append(text[:room])
            self.head_len += len(text[:room])
            text = text[room:]
        if not text:
            return
        self.tail.append(text)
        self.tail_len += len(text)
        while self.tail_len - len(self.tail[0]) >= self.tail_limit:
            self.dropped += len(self.tail[0])
            self.tail_len -= len(self.tail.popleft())
        over = self.tail_len - self.tail_limit
        if over > 0:
            self.tail[0] = self.tail[0][over:]
            self.tail_len -= over
            self.dropped += over

    def text(self) -> str:
        head, tail = "".join(self.head), "".join(self.tail)
        if not self.dropped:
            return head + tail
        note = f"\n[… {self.dropped} characters of output cut here; head and tail kept …]\n"
        return head + note + tail


def run_process(
    argv: Sequence[str],
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    cancel: threading.Event,
    on_output: Callable[[str], None],
) -> Finished:
    """Raises Cancelled (after killing the process group) when `cancel` is set."""
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # one pipe: the output interleaved as it came
        start_new_session=True,  # its own process group, so the whole tree can be killed
    )
    kept = Bounded()
    streamed = [0]

    def read() -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            text = decoder.decode(chunk, final=not chunk)
            if text:
                kept.add(text)
                if streamed[0] < STREAM_CHARS:
                    piece = text[: STREAM_CHARS - streamed[0]]
                    streamed[0] += len(piece)
                    on_output(piece)
                    if streamed[0] >= STREAM_CHARS:
                        on_output(
                            "\n[… output continues; the tool result keeps its head and tail]\n"
                        )
            if not chunk:
                return

    reader = threading.Thread(target=read, name="glm-command-output", daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while proc.poll() is None:
            if cancel.is_set():
                raise Cancelled()
            if time.monotonic() >= deadline:
                timed_out = True
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(POLL_S)
    finally:
        # Also after a normal exit: what it left running in its group (`sleep 1000 &`) goes too.
        kill_tree(proc)
        reader.join(0.5)
        if reader.is_alive():  # a child that left the group still holds the pipe
            reader.join(2)
        if proc.stdout is not None and not reader.is_alive():
            proc.stdout.close()
    return Finished(proc.returncode, kept.text(), timed_out, kept.dropped)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL to the group; bwrap's --die-with-parent and PID namespace take the rest with it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
