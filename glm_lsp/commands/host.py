"""`glm-lsp host start|stop|status|token`: the per-user host (glm_lsp/host/)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from glm_lsp.config import Settings
from glm_lsp.errors import EXIT_BACKEND, EXIT_OK, UsageError
from glm_lsp.runtime.base import BackendError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="host_command", required=True)
    start = sub.add_parser("start", help="start the host (in the background unless --foreground)")
    start.add_argument(
        "--foreground", action="store_true", help="run in this process (launchd, tests)"
    )
    start.add_argument(
        "--model", default=None, help="load this model now (default: on first request)"
    )
    start.add_argument(
        "--openai-port",
        type=int,
        default=None,
        metavar="P",
        help="serve the OpenAI-compatible endpoint on 127.0.0.1:P (0: a free port)",
    )
    start.add_argument(
        "--keep-alive",
        type=float,
        default=None,
        metavar="MIN",
        help="unload a model after MIN minutes without a request (-1: never; 30)",
    )
    start.add_argument(
        "--host-cache-gb",
        type=float,
        default=None,
        metavar="GB",
        help="KV caches kept in memory (the rest go to disk; 8)",
    )
    start.add_argument(
        "--scripted-replies",
        default=None,
        metavar="FILE",
        help="script the OpenAI endpoint's replies (tests)",
    )
    from glm_lsp.cli import add_distributed_flag  # the host can be rank 0 of a launch

    add_distributed_flag(start)
    sub.add_parser("stop", help="stop the host (it saves every KV cache first)")
    status = sub.add_parser("status", help="what the host holds and has done")
    status.add_argument("--json", action="store_true")
    sub.add_parser("token", help="print the bearer token of the OpenAI endpoint")  # fmt: skip


def host_command(args: argparse.Namespace) -> int:
    return {"start": _start, "stop": _stop, "status": _status, "token": _token}[args.host_command](
        args
    )


def _settings(args: argparse.Namespace) -> Settings:
    changes: dict[str, object] = {}
    if args.keep_alive is not None:
        changes["keepAlive"] = args.keep_alive
    if args.host_cache_gb is not None:
        changes["hostCacheGB"] = args.host_cache_gb
    if args.model is not None:
        changes["model"] = args.model
    try:
        return Settings().merged(changes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _start(args: argparse.Namespace) -> int:
    from glm_lsp.host import registry
    from glm_lsp.host.client import answers, wait_for_host

    settings = _settings(args)
    if args.foreground:
        return _foreground(args, settings)
    reg = registry.live()
    if reg is not None and answers(reg):
        print(f"glm-lsp host already running (pid {reg.pid}), socket {reg.socket}")
        return EXIT_OK
    argv = ["host", "start", "--foreground"]
    for flag, value in (
        ("--model", args.model),
        ("--openai-port", args.openai_port),
        ("--keep-alive", args.keep_alive),
        ("--host-cache-gb", args.host_cache_gb),
        ("--scripted-replies", args.scripted_replies),
    ):
        if value is not None:
            argv += [flag, str(value)]
    log_path = registry.host_dir() / registry.LOG
    from glm_lsp import state_files

    with registry.start_lock(), state_files.open_append_text(log_path) as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "glm_lsp.cli", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
        reg = wait_for_host(child, log_path)
    print(f"glm-lsp host started (pid {reg.pid}), socket {reg.socket}")
    if reg.openai:
        print(f"OpenAI endpoint {reg.openai} (token: glm-lsp host token)")
    return EXIT_OK


def _foreground(args: argparse.Namespace, settings: Settings) -> int:
    from glm_lsp.host.engine import Engine
    from glm_lsp.host.server import HostServer
    from glm_lsp.runtime import factory

    def main() -> int:
        pinned = factory._pinned is not None
        loader = (lambda name, _status: factory.mlx_model(name)) if pinned else None
        engine = Engine(
            keep_alive_min=settings.keepAlive,
            cache_gb=settings.hostCacheGB,
            loader=loader,
            pinned=pinned,
        )
        endpoint = None
        if args.openai_port is not None:
            from glm_lsp.host.openai_api import endpoint_starter

            endpoint = endpoint_starter(
                port=args.openai_port,
                model=settings.model,
                scripted_replies=args.scripted_replies,
            )
        return HostServer(engine, preload=args.model, endpoint=endpoint).run()

    if args.distributed:
        from glm_lsp.runtime.distributed import entry

        return entry(args.distributed, settings, main)
    return main()


def _stop(args: argparse.Namespace) -> int:
    from glm_lsp.host import registry
    from glm_lsp.host.client import host_request
    from glm_lsp.runtime.pids import alive

    reg = registry.live()
    if reg is None:
        print("no glm-lsp host is running")
        return EXIT_OK
    host_request("stop")
    deadline = time.monotonic() + 60
    while alive(reg.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded: the host saves its KV caches before it exits
    if alive(reg.pid):
        print(f"glm-lsp: error: the host (pid {reg.pid}) did not stop within 60 s", file=sys.stderr)
        return EXIT_BACKEND
    print(f"stopped the glm-lsp host (pid {reg.pid})")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from glm_lsp.host.client import host_request

    try:
        status = host_request("status")
    except BackendError as exc:
        if args.json:
            print(json.dumps({"running": False, "error": str(exc)}))
        else:
            print(str(exc))
        return EXIT_BACKEND
    if args.json:
        print(json.dumps(status, indent=1))
        return EXIT_OK
    print(f"glm-lsp host {status['version']} (pid {status['pid']}), socket {status['socket']}")
    for m in status["models"]:
        state = "loaded" if m["loaded"] else "unloaded"
        print(f"  model {m['name']}: {state}, loaded {m['loads']} time(s)")
    print(f"  clients {status['clients']}, conversations {status['conversations']}")
    if status.get("openai"):
        print(f"  OpenAI endpoint {status['openai']}")
    for r in status["recent"][-5:]:
        print(
            f"  {r['client']}: {r['promptTokens']} prompt tokens ({r['reusedTokens']} reused), "
            f"{r['generatedTokens']} generated"
        )
    return EXIT_OK


def _token(args: argparse.Namespace) -> int:
    from glm_lsp.host import registry

    print(registry.token(create=True))
    return EXIT_OK


__all__ = ["add_arguments", "host_command"]
