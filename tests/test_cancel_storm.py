"""A burst of 100 agent requests mixed with every kind of cancel, against one real server.

While the queue is full the editor still gets code actions within a second; every request gets
exactly one answer; the queue drains; the server's thread count returns to its baseline; the
cancelled requests leave no trace in the log; and the next request works.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psutil

from tests.lsp_wire import WireClient, start_server
from tests.test_server import WHOLE_REFACTORS

A_PY = "def foo(x):\n    return 2 * x\n\n\nclass Box:\n    def get(self):\n        return foo(1)\n"
MEDIUM = "word " * 800  # long enough to be mid-generation when the cancels arrive
CANCELLED = -32800
REQUESTS = 100


def code_action_round_trip(client: WireClient, uri: str) -> float:
    started = time.monotonic()
    actions = client.request(
        "textDocument/codeAction",
        {
            "textDocument": {"uri": uri},
            "range": {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}},
            "context": {"diagnostics": []},
        },
        timeout=10,
    )
    elapsed = time.monotonic() - started
    assert [a["title"] for a in actions] == ["GLM: Explain", "GLM: Refactor…", *WHOLE_REFACTORS]
    return elapsed


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_cancellation_storm(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text(A_PY)
    uri = (root / "pkg" / "a.py").as_uri()
    client = start_server(tmp_path, tiny_model_dir, root, ["Warm.", MEDIUM])
    try:
        server = psutil.Process(client.proc.pid)
        # Warm up: the model is loaded, the worker thread and the file watcher run.
        assert client.command("glm.explain", {"uri": uri}, timeout=120)["text"] == "Warm."
        code_action_round_trip(client, uri)
        time.sleep(0.5)
        baseline = server.num_threads()

        ids: list[str] = []
        cancels = {"$/cancelRequest": 0, "glm.cancel": 0, "progress cancel": 0}
        for i in range(REQUESTS):
            command = "glm.explain" if i % 3 else "glm.ask"
            arg = {"uri": uri} if command == "glm.explain" else {"question": f"q{i}"}
            msg_id = f"storm-{i}"
            client.request_async(
                "workspace/executeCommand", {"command": command, "arguments": [arg]}, msg_id=msg_id
            )
            ids.append(msg_id)
            if i % 4 == 1:  # cancelled at once, most likely while still queued
                client.notify("$/cancelRequest", {"id": msg_id})
                cancels["$/cancelRequest"] += 1
            elif i % 4 == 2 and i >= 2:  # an earlier one, possibly the one generating
                client.notify("$/cancelRequest", {"id": ids[i - 2]})
                cancels["$/cancelRequest"] += 1
            if i % 10 == 9:  # everything running or queued so far
                client.request_async(
                    "workspace/executeCommand", {"command": "glm.cancel", "arguments": [{}]}
                )
                cancels["glm.cancel"] += 1
            if i % 7 == 6 and client.progress_tokens:  # the editor's progress UI
                token = client.progress_tokens[-1]
                client.notify("window/workDoneProgress/cancel", {"token": token})
                cancels["progress cancel"] += 1

        # The burst is in: the editor still gets its code actions at once, several times over.
        peak = server.num_threads()
        round_trips = [code_action_round_trip(client, uri) for _ in range(5)]
        assert max(round_trips) < 1.0, round_trips
        status = client.command("glm.status", {}, timeout=5)
        client.command("glm.cancel", {}, timeout=5)  # whatever is left
        cancels["glm.cancel"] += 1

        answers = {msg_id: client.wait(msg_id, timeout=120) for msg_id in ids}
        outcomes = {"cancelled": 0, "answered": 0}
        for msg_id, answer in answers.items():
            assert client.answer_counts[msg_id] == 1, msg_id
            if "error" in answer:
                assert answer["error"]["code"] == CANCELLED, answer
                assert "cancel" in answer["error"]["message"]  # ours or pygls's own
                outcomes["cancelled"] += 1
            else:
                outcomes["answered"] += 1

        def drained() -> bool:
            now = client.command("glm.status", {}, timeout=5)
            return now["queued"] == 0 and now["busy"] is False

        wait_until(drained, 30, "the queue to drain")
        wait_until(lambda: server.num_threads() <= baseline, 30, "threads back to baseline")
        assert code_action_round_trip(client, uri) < 1.0

        # Nothing of the cancelled requests was logged; the next request works.
        after = client.command("glm.explain", {"uri": uri}, timeout=300)
        assert after["text"] == MEDIUM.strip() or outcomes["answered"], after["text"][:80]
        log = (root / ".glm-lsp" / "thinking.jsonl").read_text().splitlines()
        assert len(log) == 2 + outcomes["answered"]
        assert json.loads(log[-1])["turn"] == after["turn"]
        assert client.edits == []
        assert "Traceback" not in client.stderr(), client.stderr()[-3000:]
        print(
            f"\nstorm: {REQUESTS} requests, cancels {cancels}, {outcomes}, status during burst "
            f"busy={status['busy']} queued={status['queued']}, code action max "
            f"{max(round_trips) * 1000:.0f} ms, threads {baseline} (peak {peak}) -> "
            f"{server.num_threads()}"
        )
    finally:
        client.close()
