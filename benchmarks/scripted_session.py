"""A scripted agent session through glm-lsp's real Session, agent loop and MLX runtime.

8 requests with 3 tool steps each (4 completions a request) on a copy of the demo workspace.
The replies are forced through the tiny model (the README's Scripted replies); a thin recording wrapper keeps
each completion's request (prompt, messages, tools) and result, so the same conversation can be
replayed to mlx_lm.server and its token accounting checked.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import FIXTURE, stop_after
from glm_lsp.agent.prompts import AgentRequest
from glm_lsp.agent.session import Session
from glm_lsp.config import Settings
from glm_lsp.glm.parse import tool_call_text
from glm_lsp.runtime.base import Backend, Completion, CompletionRequest, OnText, Stats
from glm_lsp.runtime.mlx import MLXModel
from glm_lsp.runtime.scripted import ScriptedReplies

ToolCall = tuple[str, dict[str, str]]

# (kind, instruction, three tool calls): refactors think, explain/ask do not (thinking "auto").
PLAN: list[tuple[str, str, list[ToolCall]]] = [
    (
        "explain",
        "What does Cart.total compute?",
        [
            ("read_file", {"path": "shop/cart.py"}),
            ("outline", {"path": "shop/pricing.py"}),
            ("search", {"pattern": "compute_total"}),
        ],
    ),
    (
        "refactor",
        "Rename compute_total to order_total everywhere.",
        [
            ("search", {"pattern": "compute_total"}),
            ("read_file", {"path": "shop/pricing.py"}),
            (
                "edit_file",
                {
                    "path": "shop/pricing.py",
                    "old_text": "def compute_total(",
                    "new_text": "def order_total(",
                },
            ),
        ],
    ),
    (
        "ask",
        "Which files import from shop.pricing?",
        [
            ("list_files", {"path": "shop"}),
            ("search", {"pattern": "from shop.pricing"}),
            ("read_file", {"path": "shop/__init__.py"}),
        ],
    ),
    (
        "refactor",
        "Add a discount percent parameter to Cart.total.",
        [
            ("read_file", {"path": "shop/cart.py"}),
            ("outline", {"path": "shop/cart.py"}),
            (
                "edit_file",
                {
                    "path": "shop/cart.py",
                    "old_text": "def total(self) -> float:",
                    "new_text": "def total(self, percent: float = 0.0) -> float:",
                },
            ),
        ],
    ),
    (
        "explain",
        "How is tax applied?",
        [
            ("search", {"pattern": "tax_rate"}),
            ("read_file", {"path": "shop/pricing.py", "start_line": "1", "end_line": "9"}),
            ("outline", {"path": "shop/cart.py"}),
        ],
    ),
    (
        "refactor",
        "Give Cart a clear() method.",
        [
            ("outline", {"path": "shop/cart.py"}),
            ("read_file", {"path": "shop/cart.py", "start_line": "10", "end_line": "20"}),
            (
                "edit_file",
                {
                    "path": "shop/cart.py",
                    "old_text": "    def add(self, price: float) -> None:",
                    "new_text": "    def clear(self) -> None:\n        self.prices.clear()\n\n"
                    "    def add(self, price: float) -> None:",
                },
            ),
        ],
    ),
    (
        "ask",
        "Is there a README that documents the package?",
        [
            ("list_files", {}),
            ("read_file", {"path": "README.md"}),
            ("search", {"pattern": "shop", "path": "README.md"}),
        ],
    ),
    (
        "refactor",
        "Round totals with a helper function in pricing.py.",
        [
            ("read_file", {"path": "shop/pricing.py"}),
            ("search", {"pattern": "round("}),
            (
                "edit_file",
                {
                    "path": "shop/pricing.py",
                    "old_text": "    return round(subtotal * (1 + tax_rate), 2)",
                    "new_text": "    return _cents(subtotal * (1 + tax_rate))\n\n\n"
                    "def _cents(x: float) -> float:\n    return round(x, 2)",
                },
            ),
        ],
    ),
]


def replies(plan: list[tuple[str, str, list[ToolCall]]]) -> list[str]:
    """Raw completion texts, in the order the agent asks for them."""
    out = []
    for n, (kind, _instruction, calls) in enumerate(plan):
        thinks = kind in ("refactor", "fix")
        for i, (name, args) in enumerate(calls):
            reasoning = f"Step {i + 1} of request {n + 1}: I should call {name} next.</think>"
            out.append(
                (reasoning if thinks else "") + f"Calling {name}." + tool_call_text(name, args)
            )
        done = f"Request {n + 1} is done; summarise.</think>" if thinks else ""
        out.append(done + f"Done with request {n + 1}: here is the answer.")
    return out


@dataclass
class Step:
    """One completion: what was asked and what came back."""

    request: CompletionRequest
    text: str
    stats: Stats

    @property
    def processed(self) -> str:
        """Everything the model has run through after this completion: prompt, reply, stop."""
        return self.request.prompt + self.text + stop_after(self.text)


class Recording:
    """A Backend that records each completion of the backend it wraps."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name, self.model_name = inner.name, inner.model_name
        self.steps: list[Step] = []

    def complete(
        self, request: CompletionRequest, on_text: OnText, cancel: threading.Event
    ) -> Completion:
        completion = self.inner.complete(request, on_text, cancel)
        self.steps.append(Step(request, completion.text, completion.stats))
        return completion

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def save(self) -> None:
        self.inner.save()

    def close(self) -> None:
        self.inner.close()


@dataclass
class ScriptedSession:
    root: Path  # the workspace; its state dir (log + persisted KV cache) is root/.glm-lsp
    model: MLXModel
    steps: list[Step]
    requests: list[Stats] = field(default_factory=list)  # summed per request


def run_session(workdir: Path, model: MLXModel, n_requests: int = 8) -> ScriptedSession:
    root = workdir / "ws"
    shutil.copytree(FIXTURE, root)
    plan = PLAN[:n_requests]
    settings = Settings(model=str(model.path))  # defaults otherwise, as `glm-lsp serve` has
    backend = Recording(
        model.conversation(
            state_dir=settings.state_dir(root),
            persist=True,
            scripted=ScriptedReplies(replies(plan)),
        )
    )
    session = Session(root, settings, backend)
    done = ScriptedSession(root, model, backend.steps)
    for kind, instruction, _calls in plan:
        outcome = session.run(
            AgentRequest(kind=kind, instruction=instruction),
            lambda _kind, _text: None,
            threading.Event(),
            lambda _changes: (False, "benchmark: edits are not applied"),
        )
        done.requests.append(outcome.result.stats)
    return done
