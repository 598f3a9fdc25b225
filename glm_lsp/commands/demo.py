"""`glm-lsp demo`: explain + a multi-file refactor over LSP, on a copy of a fixture workspace.

The demo is the editor: it starts `glm-lsp serve`, asks for code actions, runs glm.explain and
glm.refactor, applies the server's one `workspace/applyEdit` to the copy and prints the diff.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

from glm_lsp.config import Settings, kebab
from glm_lsp.errors import EXIT_BACKEND, EXIT_OK, UsageError
from glm_lsp.server.client_edits import apply_workspace_edit, client_converter

# Package data, so `pip install glm-lsp` (or pipx) has the demo without the source tree.
FIXTURE = Path(__file__).resolve().parents[1] / "demo_data"
DEFAULT_CACHE = Path("~/.cache/glm-lsp/demo-model").expanduser()
INSTRUCTION = (
    "Rename compute_total to order_total everywhere, and add shop/discounts.py with "
    "apply_discount(prices, tax_rate, percent) built on it."
)
DIM, RESET = ("\x1b[2m", "\x1b[0m") if sys.stdout.isatty() else ("", "")


def say(text: str = "", end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


def server_flags(settings: Settings) -> list[str]:
    """Every setting that differs from the default, as `glm-lsp serve` flags."""
    flags = []
    defaults = Settings()
    for key, value in settings.to_dict().items():
        if value == getattr(defaults, key):
            continue
        if key == "host":  # off is the only other value; --host is serve's TCP address
            flags.append("--no-host")
        elif isinstance(value, bool):
            flags.append(f"--{kebab(key)}" if value else f"--no-{kebab(key)}")
        else:
            flags += [f"--{kebab(key)}", "null" if value is None else str(value)]
    return flags


def snapshot(root: Path) -> dict[str, str]:
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(".glm-lsp"):
            files[rel] = path.read_text(encoding="utf-8", errors="replace")
    return files


def diff(before: dict[str, str], after: dict[str, str]) -> str:
    out = []
    for rel in sorted(set(before) | set(after)):
        old, new = before.get(rel), after.get(rel)
        if old == new:
            continue
        out += difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            (new or "").splitlines(keepends=True),
            f"a/{rel}" if old is not None else "/dev/null",
            f"b/{rel}" if new is not None else "/dev/null",
        )
    return "".join(out)


class DemoClient:
    """Prints what the server streams and applies its edits to the workspace copy."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.client = LanguageClient("glm-lsp-demo", "1", converter_factory=client_converter)
        self.kind = ""
        self.diff = ""
        c = self.client

        @c.feature("glm/stream")
        def on_stream(params: Any) -> None:
            kind, text = getattr(params, "kind", ""), getattr(params, "text", "")
            if kind != self.kind:
                say()
                if kind == "reasoning":
                    say(f"{DIM}[thinking]{RESET} ", end="")
            self.kind = kind
            if kind == "reasoning":
                say(f"{DIM}{text}{RESET}", end="")
            elif kind == "tool_call":
                say(f"  → {text}", end="")
            elif kind == "tool_result":
                first = text.splitlines()[0] if text else ""
                say(f"    ← {first[:100]}", end="")
            else:
                say(text, end="")

        @c.feature(lsp.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def on_create(params: lsp.WorkDoneProgressCreateParams) -> None:
            return None

        @c.feature(lsp.PROGRESS)
        def on_progress(params: lsp.ProgressParams) -> None:
            value = params.value if isinstance(params.value, dict) else {}
            message = value.get("message") or value.get("title")
            if message:
                say()
                say(f"{DIM}[progress] {message}{RESET}", end="")
                self.kind = "progress"

        @c.feature(lsp.WORKSPACE_APPLY_EDIT)
        def on_apply(params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
            before = snapshot(self.root)
            applied, reason = apply_workspace_edit(params.edit)
            self.diff = diff(before, snapshot(self.root))
            return lsp.ApplyWorkspaceEditResult(applied=applied, failure_reason=reason)

    async def command(self, name: str, arg: dict[str, Any], timeout: float | None) -> Any:
        params = lsp.ExecuteCommandParams(command=name, arguments=[arg])
        self.kind = ""
        result = await asyncio.wait_for(
            self.client.workspace_execute_command_async(params), timeout
        )
        say()
        return result


def _stats(stats: dict[str, Any]) -> str:
    return (
        f"{stats['promptTokens']} prompt tokens ({stats['reusedTokens']} reused from the KV cache, "
        f"{stats['prefilledTokens']} computed), {stats['generatedTokens']} generated, "
        f"first token {stats['ttftMs']:.0f} ms, {stats['decodeTps']} tok/s"
    )


async def drive(root: Path, server_cmd: list[str], timeout: float | None) -> int:
    demo = DemoClient(root)
    client = demo.client
    await client.start_io(*server_cmd)
    try:
        await asyncio.wait_for(
            client.initialize_async(
                lsp.InitializeParams(
                    capabilities=lsp.ClientCapabilities(
                        window=lsp.WindowClientCapabilities(work_done_progress=True),
                        workspace=lsp.WorkspaceClientCapabilities(
                            apply_edit=True,
                            # apply_workspace_edit takes documentChanges and file operations
                            workspace_edit=lsp.WorkspaceEditClientCapabilities(
                                document_changes=True,
                                resource_operations=list(lsp.ResourceOperationKind),
                            ),
                        ),
                        # as our plugins: it prints glm/stream and waits for each result
                        experimental={"glm": {"stream": True}},
                    ),
                    root_uri=root.as_uri(),
                    workspace_folders=[lsp.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
                )
            ),
            120,
        )
        client.initialized(lsp.InitializedParams())
        cart = root / "shop" / "cart.py"
        uri = cart.as_uri()
        client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                lsp.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=cart.read_text()
                )
            )
        )
        cursor = lsp.Position(line=18, character=8)  # inside Cart.total, nothing selected
        say("== textDocument/codeAction at shop/cart.py:19 (empty selection)")
        params = lsp.CodeActionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            range=lsp.Range(start=cursor, end=cursor),
            context=lsp.CodeActionContext(diagnostics=[]),
        )
        actions = await client.text_document_code_action_async(params)
        action_arg: dict[str, Any] = {"uri": uri}
        for action in actions or []:
            command = action.command if isinstance(action, lsp.CodeAction) else action
            say(f"  {action.title:<16} -> {command.command if command else '?'}")
            if command and command.command == "glm.explain" and command.arguments:
                action_arg = command.arguments[0]
        r = action_arg.get("range") or {}
        if r:
            say(
                f"  (the empty selection widened to lines {r['start']['line'] + 1}-{r['end']['line'] + 1}: Cart.total)"
            )

        say("\n== glm.explain")
        explained = await demo.command("glm.explain", action_arg, timeout)
        say(f"turn {explained['turn']}: {_stats(explained['stats'])}")

        say(f"\n== glm.refactor: {INSTRUCTION}")
        pricing = (root / "shop" / "pricing.py").as_uri()
        result = await demo.command(
            "glm.refactor", {"uri": pricing, "instruction": INSTRUCTION}, timeout
        )
        say(f"\nturn {result['turn']}: {_stats(result['stats'])}")
        say(f"summary: {result['summary']}")
        for change in result["changes"]:
            say(f"  {change['kind']:<7} {change['uri'].removeprefix(root.as_uri() + '/')}")
        if result["applied"]:
            say("\nthe editor (this demo) applied the one workspace/applyEdit; the diff:\n")
            say(demo.diff.rstrip("\n"))
        else:
            say(f"\nnot applied: {result.get('failureReason')}")
        log_path = root / ".glm-lsp" / "thinking.jsonl"
        say(f"\npreserved-thinking log: {log_path} (glm-lsp log {root})")
        await asyncio.wait_for(client.shutdown_async(None), 30)
        client.exit(None)
        return EXIT_OK
    finally:
        # pygls has no public handle on the server process it started (only stop(), which
        # waits without a limit): the demo waits 10 s, then terminates it.
        process = client._server
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.terminate()
        await client.stop()


def demo(args: argparse.Namespace, settings: Settings) -> int:
    real = settings.backend == "openai" or (
        settings.model != Settings().model and not settings.scriptedReplies
    )
    workdir = Path(tempfile.mkdtemp(prefix="glm-lsp-demo-"))
    root = workdir / "shop-demo"
    shutil.copytree(FIXTURE / "workspace", root, ignore=shutil.ignore_patterns("__pycache__"))
    if not real:
        from glm_lsp.tiny_model import ensure_tiny_model

        cache = Path(args.cache_dir).expanduser() if args.cache_dir else DEFAULT_CACHE
        say(f"preparing the tiny demo model in {cache} (built once, then reused) ...")
        model = ensure_tiny_model(cache)
        replies = workdir / "replies.json"
        shutil.copy(settings.scriptedReplies or FIXTURE / "replies.json", replies)
        # In-process: a host would keep this throwaway model loaded after the demo ends.
        settings = settings.merged(
            {"model": str(model), "scriptedReplies": str(replies), "host": "off"}
        )
        say(
            "NOTE: this demo model has random weights and its replies are scripted: the tokens\n"
            "are forced through the real model (real prefill, KV cache, streaming, parser, tools,\n"
            "LSP edits) but the words are fixed. To run a real model:\n"
            "  glm-lsp demo --model mlx-community/GLM-4.7-8bit-gs32        (embedded MLX)\n"
            "  glm-lsp demo --backend openai --base-url http://127.0.0.1:1234/v1 --model <name>  (LM Studio)\n"
        )
    else:
        say(f"running with {settings.backend} model {settings.model}\n")
    say(f"workspace copy: {root}\n")
    cmd = [sys.executable, "-m", "glm_lsp.cli", "serve", *server_flags(settings)]
    try:
        return asyncio.run(drive(root, cmd, None if real else 150))
    except TimeoutError:
        raise UsageError("the demo timed out waiting for the server") from None
    except Exception as exc:  # a JSON-RPC error from the server: show it as one sentence
        print(f"glm-lsp: demo failed: {exc}", file=sys.stderr)
        return EXIT_BACKEND
    finally:
        if args.keep:
            say(f"kept the demo workspace: {root}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            say("removed the demo workspace copy (run with --keep to keep it and its log)")
