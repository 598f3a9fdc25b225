"""The MLX distributed group glm-lsp runs on: the launcher check, rank 0's control channel to the
other ranks, and the watch that turns a lost rank into one clear error instead of a hang.

Every control message is an `all_sum` in which rank 0 contributes the payload and the others
zeros (as mlx_lm.server shares its requests). It runs on mlx-lm's generation stream, the stream
the model's own collectives run on, so control messages and forward passes reach the wire in the
same order on every rank.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import Queue
from typing import Any, TypeVar

import mlx.core as mx
from mlx_lm.generate import generation_stream

from glm_lsp.errors import UsageError
from glm_lsp.runtime.base import BackendError
from glm_lsp.runtime.pids import alive

T = TypeVar("T")
MODES = ("pipeline", "tensor")
LAUNCH_HINT = (
    "start every rank with an MLX launcher, e.g. `mlx.launch --hostfile hosts.json "
    "--backend ring -- glm-lsp serve --tcp --distributed pipeline --model MODEL` "
    "(on one machine: `mlx.launch --hosts 127.0.0.1,127.0.0.1 --backend ring ...`; "
    "see the README's Two Macs)"
)
LOST_GRACE_S = 3.0  # MLX's ring raises on its own within about a second; this is the backstop
POLL_S = 0.2


class RankLost(BackendError):
    """A rank of the group exited or stopped answering; the group cannot serve any more."""


def launched() -> bool:
    """Whether an MLX launcher (mlx.launch for ring/jaccl, mpirun) started this process."""
    return any(
        k in os.environ for k in ("MLX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MLX_HOSTFILE")
    )


def init_group() -> Any:
    """The launcher's group (two ranks or more), or a UsageError saying how to launch."""
    if not launched():
        raise UsageError(f"--distributed needs ranks started together: {LAUNCH_HINT}")
    try:
        group = mx.distributed.init(strict=True)
    except RuntimeError as exc:
        raise UsageError(f"MLX distributed did not start ({exc}): {LAUNCH_HINT}") from None
    if group.size() < 2:
        raise UsageError(
            f"--distributed needs two ranks or more, this group has one: {LAUNCH_HINT}"
        )
    return group


@dataclass
class Cluster:
    group: Any
    mode: str
    pids: list[int] = field(default_factory=list)  # each rank's process id
    hosts: list[str] = field(default_factory=list)  # each rank's host name
    lost: str | None = None  # why the group is broken, once it is
    lost_at: float = 0.0
    lock: threading.RLock = field(default_factory=threading.RLock)  # one message at a time
    _jobs: Queue[Callable[[], None]] | None = None

    @property
    def rank(self) -> int:
        return int(self.group.rank())

    @property
    def size(self) -> int:
        return int(self.group.size())

    @property
    def layout(self) -> str:
        return f"{self.mode}-{self.rank}of{self.size}"

    # -- collectives ----------------------------------------------------------------------------
    def _sum(self, array: mx.array) -> mx.array:
        if self.lost:
            raise RankLost(self.lost_message())
        try:
            with mx.stream(generation_stream):
                out = mx.distributed.all_sum(array, group=self.group)
            mx.eval(out)
        except RuntimeError as exc:
            raise self.fail(str(exc)) from None
        return out

    def share(self, message: dict[str, Any] | None = None) -> dict[str, Any]:
        """Rank 0 passes the message, the others None; every rank gets rank 0's message."""
        data = json.dumps(message).encode() if self.rank == 0 else b""
        size = int(self._sum(mx.array([len(data)], mx.int32)).item())
        mine = mx.array(list(data), mx.uint8) if self.rank == 0 else mx.zeros(size, mx.uint8)
        return json.loads(bytes(self._sum(mine).tolist()))

    def flag(self, value: int) -> int:
        """The sum of every rank's value: rank 0 says stop (1) or go on (0), the others 0."""
        return int(self._sum(mx.array([value], mx.int32)).item())

    def vector(self, values: list[int]) -> list[int]:
        return [int(v) for v in self._sum(mx.array(values, mx.int32)).tolist()]

    def handshake(self) -> None:
        """Every rank learns every rank's pid and host: the watch checks the local ones."""
        pids = [0] * self.size
        pids[self.rank] = os.getpid()
        self.pids = self.vector(pids)
        name = socket.gethostname().encode()[:63]
        names = [0] * (64 * self.size)
        names[64 * self.rank : 64 * self.rank + len(name)] = list(name)
        raw = self.vector(names)
        self.hosts = [
            bytes(raw[64 * r : 64 * r + 64]).rstrip(b"\0").decode(errors="replace")
            for r in range(self.size)
        ]

    # -- failure ---------------------------------------------------------------------------------
    def fail(self, detail: str) -> RankLost:
        if self.lost is None:
            self.lost, self.lost_at = detail, time.monotonic()
        return RankLost(self.lost_message())

    def lost_message(self) -> str:
        return (
            f"the distributed group lost a rank ({self.lost}); the request ended and the group "
            "cannot serve any more: restart every rank with mlx.launch"
        )

    def watch(self) -> None:
        """Rank 0: a thread that notices a rank on this host exiting, even while a collective
        is blocked waiting for it."""

        def loop() -> None:
            here = socket.gethostname()
            local = [
                (r, p)
                for r, (p, h) in enumerate(zip(self.pids, self.hosts, strict=True))
                if r and h == here
            ]
            while self.lost is None:
                for r, pid in local:
                    if not alive(pid):
                        self.fail(f"rank {r} (pid {pid}) exited")
                time.sleep(POLL_S)

        threading.Thread(target=loop, name="glm-rank-watch", daemon=True).start()

    def run(self, work: Callable[[], T]) -> T:
        """Run `work` on the one thread that talks to the group, and wait for it, but never past
        a lost rank: a collective blocked on a dead peer must not hang the caller."""
        if self._jobs is None:
            self._jobs = Queue()
            threading.Thread(target=self._serve_jobs, name="glm-rank0-gen", daemon=True).start()
        done = threading.Event()
        box: dict[str, Any] = {}

        def job() -> None:
            try:
                box["value"] = work()
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc
            finally:
                done.set()

        self._jobs.put(job)
        while not done.wait(POLL_S):
            if self.lost and time.monotonic() - self.lost_at > LOST_GRACE_S:
                raise RankLost(self.lost_message())
        if "error" in box:
            error = box["error"]
            # A RuntimeError from a model collective: a peer is gone.
            peer = self.lost or _peer_error(str(error))
            if isinstance(error, RuntimeError) and not isinstance(error, BackendError) and peer:
                raise self.fail(str(error)) from None
            raise error
        return box["value"]

    def _serve_jobs(self) -> None:
        assert self._jobs is not None
        while True:
            self._jobs.get()()


def _peer_error(message: str) -> bool:
    return any(w in message.lower() for w in ("[ring]", "[jaccl]", "[mpi]", "peer", "connection"))
