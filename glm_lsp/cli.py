"""`glm-lsp` command line (see the README). Exit codes: 0 ok, 2 usage/config, 3 model/backend."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attrs import fields

from glm_lsp.config import Settings, SettingsError, kebab, validate
from glm_lsp.errors import EXIT_BACKEND, EXIT_OK, EXIT_USAGE, UsageError
from glm_lsp.mcp.config import EXAMPLE


def _parse_value(key: str, raw: str) -> Any:
    default = getattr(Settings(), key)
    if key == "mcpServers":  # a JSON object, as in the settings file
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise SettingsError(
                key, f"--mcp-servers is not JSON ({exc}); give e.g. {EXAMPLE}"
            ) from None
    if key == "codeActions":  # a JSON list, as in the settings
        try:
            return json.loads(raw)
        except ValueError as exc:
            example = '[{"label": "Simplify", "instruction": "Simplify this code."}]'
            message = f"--code-actions is not JSON ({exc}); give e.g. {example}"
            raise SettingsError(key, message) from None
    if key == "kvBits":
        return None if raw.lower() in ("none", "null", "0") else _int(key, raw)
    if isinstance(default, bool):
        return raw
    if isinstance(default, int):
        return _int(key, raw)
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(key, f"--{kebab(key)} is {raw!r}; give a number") from None
    return raw


def _int(key: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(key, f"--{kebab(key)} is {raw!r}; give a whole number") from None


HOST_DEST = "host_setting"  # args.host is serve's --host (the TCP address)
LIST_FLAGS = {
    "commandEnv": (
        "--command-env",
        "NAME",
        "commands also get this environment variable (repeatable)",
    ),
    "sandboxHide": ("--sandbox-hide", "PATH", "the sandbox also hides this path (repeatable)"),
}


def add_setting_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Every setting of the README's Settings as a flag; booleans as --x / --no-x. `skip`: a
    setting whose flag would clash with the command's own (run --review)."""
    group = parser.add_argument_group(
        "settings (also LSP settings; see the README's Settings table)"
    )
    for f in fields(Settings):
        if f.name in skip:
            continue
        flag = "--" + kebab(f.name)
        if f.name == "host":  # --host is serve's TCP address: the setting is --no-host
            group.add_argument(
                "--no-host",
                dest=HOST_DEST,
                action="store_const",
                const="off",
                default=None,
                help="run the model in this process, not in the per-user host",
            )
        elif f.name == "allowCommands":  # a list: one pattern per flag, repeatable
            group.add_argument(
                "--allow-command",
                dest=f.name,
                action="append",
                metavar="PATTERN",
                default=None,
                help="run_command may run command lines matching this glob (repeatable)",
            )
        elif f.name == "mcpAllow":  # a list too: one <server>__<tool> glob per flag
            group.add_argument(
                "--mcp-allow",
                dest=f.name,
                action="append",
                metavar="PATTERN",
                default=None,
                help="MCP tools matching this <server>__<tool> glob are called without asking",
            )
        elif f.name in LIST_FLAGS:  # lists too: one entry per flag, repeatable
            flag, metavar, text = LIST_FLAGS[f.name]
            group.add_argument(
                flag, dest=f.name, action="append", metavar=metavar, default=None, help=text
            )
        elif isinstance(getattr(Settings(), f.name), bool):
            group.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None
            )
        else:
            group.add_argument(flag, dest=f.name, metavar=f.name.upper(), default=None)


def settings_from(args: argparse.Namespace, base: Settings | None = None) -> Settings:
    changes = {}
    try:  # a flag that does not parse (--max-tokens x, --mcp-servers '{') is a usage error too
        for f in fields(Settings):
            raw = getattr(args, HOST_DEST if f.name == "host" else f.name, None)
            if raw is not None:
                changes[f.name] = _parse_value(f.name, raw) if isinstance(raw, str) else raw
        return (base or Settings()).merged(changes)
    except SettingsError as exc:
        raise UsageError(str(exc)) from None


def _cmd_tiny_model(args: argparse.Namespace) -> int:
    from glm_lsp.tiny_model import make_tiny_model

    out = make_tiny_model(
        Path(args.dir),
        seed=args.seed,
        hidden=args.hidden,
        layers=args.layers,
        experts=args.experts,
        kv_heads=args.kv_heads,
        heads=args.heads,
    )
    print(f"wrote a random-weight GLM-4 MoE (8-bit, group size 32) to {out}")
    return EXIT_OK


def _cmd_convert(args: argparse.Namespace) -> int:
    from glm_lsp.convert import convert

    try:
        convert(
            args.hf_path, Path(args.out_dir), q_bits=args.q_bits, q_group_size=args.q_group_size
        )
    except (ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    print(
        f"converted {args.hf_path} to {args.out_dir} ({args.q_bits}-bit, group size {args.q_group_size})"
    )
    return EXIT_OK


def add_distributed_flag(parser: argparse.ArgumentParser) -> None:
    """--distributed: a launch-time choice, so a flag only (an editor cannot start ranks)."""
    parser.add_argument(
        "--distributed",
        choices=("pipeline", "tensor"),
        default=None,
        help="spread the MLX model over the ranks of mlx.launch (layers: pipeline; every "
        "matrix: tensor); rank 0 serves, the others follow it (see the README's Two Macs)",
    )


def distributed(args: argparse.Namespace, settings: Settings, main: Any) -> int:
    """Run main() on rank 0 of a distributed launch (or plainly without --distributed)."""
    if getattr(args, "distributed", None) is None:
        return main()
    from glm_lsp.runtime.distributed import entry

    return entry(args.distributed, settings, main)


def _cmd_run(args: argparse.Namespace) -> int:
    from glm_lsp.commands.run import run_command

    settings = settings_from(args)
    return distributed(args, settings, lambda: run_command(args, settings))


def _cmd_undo(args: argparse.Namespace) -> int:
    from glm_lsp.commands.undo import undo_command

    return undo_command(
        Path(args.workspace), settings_from(args), allow_sensitive=args.allow_sensitive
    )


def _cmd_log(args: argparse.Namespace) -> int:
    from glm_lsp.commands.show_log import show_log

    return show_log(Path(args.workspace), settings_from(args), as_json=args.json)


def _cmd_doctor(args: argparse.Namespace) -> int:
    if args.distributed:
        from glm_lsp.commands.plan import plan_command

        return plan_command(args, settings_from(args))
    from glm_lsp.commands.doctor import doctor

    return doctor(settings_from(args), Path(args.workspace))


def _cmd_serve(args: argparse.Namespace) -> int:
    from glm_lsp.server import serve

    if not args.tcp and (args.token_file or args.allow_remote):
        raise UsageError("--token-file and --allow-remote only apply with --tcp")
    settings = settings_from(args)
    return distributed(
        args,
        settings,
        lambda: serve(
            settings,
            tcp=args.tcp,
            host=args.host,
            port=args.port,
            token_file=args.token_file,
            allow_remote=args.allow_remote,
        ),
    )


def _cmd_acp(args: argparse.Namespace) -> int:
    from glm_lsp.acp.agent import main as acp_main

    settings = settings_from(args)
    return distributed(args, settings, lambda: acp_main(settings))


def _cmd_demo(args: argparse.Namespace) -> int:
    from glm_lsp.commands.demo import demo

    return demo(args, settings_from(args))


def _cmd_mcp(args: argparse.Namespace) -> int:
    from glm_lsp.commands.mcp import mcp_command

    return mcp_command(args)


def _cmd_host(args: argparse.Namespace) -> int:
    from glm_lsp.commands.host import host_command

    return host_command(args)


def _cmd_export(args: argparse.Namespace) -> int:
    from glm_lsp.commands.export import export_command

    return export_command(args)


def _cmd_finetune(args: argparse.Namespace) -> int:
    from glm_lsp.commands.finetune import finetune_command

    return finetune_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glm-lsp", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the LSP server (stdio unless --tcp)")
    serve.add_argument("--tcp", action="store_true", help="listen on TCP (needs a token)")
    serve.add_argument("--host", default="127.0.0.1", help="loopback only without --allow-remote")
    serve.add_argument("--port", type=int, default=2087, help="0 picks a free port")
    serve.add_argument(
        "--token-file",
        metavar="PATH",
        help="file holding the token TCP clients send as initializationOptions.token "
        "(default: $GLM_LSP_TOKEN, else a new one written to a private file named on stderr)",
    )
    serve.add_argument(
        "--allow-remote", action="store_true", help="allow a --host other machines can reach"
    )
    add_distributed_flag(serve)
    add_setting_flags(serve)
    serve.set_defaults(func=_cmd_serve)

    acp = sub.add_parser(
        "acp", help="run the agent over the Agent Client Protocol on stdio (Zed, JetBrains, ...)"
    )
    add_distributed_flag(acp)
    add_setting_flags(acp, skip=("review",))  # the client asks before each edit
    acp.set_defaults(func=_cmd_acp)

    run = sub.add_parser("run", help="one agent request without an editor")
    run.add_argument("workspace")
    run.add_argument("instruction")
    run.add_argument("--kind", choices=("refactor", "explain", "fix", "ask"), default="refactor")
    run.add_argument("--file", help="workspace-relative file the request is about")
    run.add_argument("--lines", help="line range of the file, e.g. 10-24")
    run.add_argument("--apply", action="store_true", help="write the proposed edit")
    run.add_argument(
        "--allow-sensitive",
        action="store_true",
        help="with --apply, also write files that run code on their own (CI, .envrc, tasks)",
    )
    run.add_argument(
        "--review",
        dest="interactive_review",
        action="store_true",
        help="with --apply, ask per file and hunk on the terminal (y, n, a: rest of the file, "
        "q: leave the rest) and write only what you take",
    )
    run.add_argument(
        "--allow-mcp-json",
        action="store_true",
        help="approve the workspace's .mcp.json as it is now (remembered until it changes)",
    )
    add_distributed_flag(run)
    add_setting_flags(run, skip=("review",))
    run.set_defaults(func=_cmd_run)

    from glm_lsp.commands import host as host_cmd

    host = sub.add_parser("host", help="the per-user host: one model for every editor and agent")
    host_cmd.add_arguments(host)
    host.set_defaults(func=_cmd_host)

    from glm_lsp.commands import mcp as mcp_cmd

    mcp = sub.add_parser("mcp", help="show, approve or revoke a workspace's .mcp.json")
    mcp_cmd.add_arguments(mcp)
    mcp.set_defaults(func=_cmd_mcp)

    undo = sub.add_parser("undo", help="revert the last applied edit if its files are unchanged")
    undo.add_argument("workspace")
    undo.add_argument(
        "--allow-sensitive",
        action="store_true",
        help="also write back files that run code on their own (hooks, CI, editor tasks)",
    )
    add_setting_flags(undo)
    undo.set_defaults(func=_cmd_undo)

    demo = sub.add_parser("demo", help="explain + multi-file refactor over LSP on a fixture copy")
    demo.add_argument("--cache-dir", help="where the tiny demo model is kept between runs")
    demo.add_argument("--keep", action="store_true", help="keep the demo workspace")
    add_setting_flags(demo)
    demo.set_defaults(func=_cmd_demo)

    tiny = sub.add_parser("tiny-model", help="write a random-weight GLM-4 MoE for tests")
    tiny.add_argument("dir")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--hidden", type=int, default=128)
    tiny.add_argument("--layers", type=int, default=2)
    tiny.add_argument("--experts", type=int, default=4)
    tiny.add_argument(
        "--kv-heads", type=int, default=None, help="KV heads (2 lets tensor parallel split them)"
    )
    tiny.add_argument(
        "--heads", type=int, default=None, help="attention heads (fewer: a faster prefill on a CPU)"
    )
    tiny.set_defaults(func=_cmd_tiny_model)

    convert = sub.add_parser("convert", help="quantise a Hugging Face GLM model for MLX")
    convert.add_argument("hf_path")
    convert.add_argument("out_dir")
    convert.add_argument("--q-bits", type=int, default=8)
    convert.add_argument("--q-group-size", type=int, default=32)
    convert.set_defaults(func=_cmd_convert)

    log_cmd = sub.add_parser("log", help="print a workspace's preserved-thinking log")
    log_cmd.add_argument("workspace")
    log_cmd.add_argument("--json", action="store_true")
    add_setting_flags(log_cmd)
    log_cmd.set_defaults(func=_cmd_log)

    doctor = sub.add_parser("doctor", help="MLX device, model, memory, state dir")
    doctor.add_argument("workspace", nargs="?", default=".")
    from glm_lsp.commands.plan import add_plan_arguments

    add_plan_arguments(doctor)
    add_setting_flags(doctor)
    doctor.set_defaults(func=_cmd_doctor)

    from glm_lsp.commands import export as export_cmd
    from glm_lsp.commands import finetune as finetune_cmd

    export = sub.add_parser("export", help="the preserved-thinking log as fine-tuning JSONL")
    export_cmd.add_arguments(export)
    export.set_defaults(func=_cmd_export)

    finetune = sub.add_parser("finetune", help="train a LoRA adapter on exported traces")
    finetune_cmd.add_arguments(finetune)
    finetune.set_defaults(func=_cmd_finetune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="glm-lsp: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    from glm_lsp.runtime.base import BackendError

    try:
        return args.func(args)
    except UsageError as exc:
        print(f"glm-lsp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BackendError as exc:
        print(f"glm-lsp: error: {exc}", file=sys.stderr)
        return EXIT_BACKEND
    except KeyboardInterrupt:
        print("glm-lsp: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so, but never print the API key or a token
        return _unexpected(exc, args)


def _unexpected(exc: Exception, args: argparse.Namespace) -> int:
    import traceback

    from glm_lsp.masking import environment_secrets, mask

    secrets = environment_secrets([getattr(args, "apiKeyEnv", None), Settings().apiKeyEnv])
    if args.verbose:
        print(mask("".join(traceback.format_exception(exc)), secrets), file=sys.stderr, end="")
    detail = mask(f"{type(exc).__name__}: {exc}", secrets)
    print(f"glm-lsp: error: unexpected {detail} (run with -v for the traceback)", file=sys.stderr)
    return EXIT_BACKEND  # the exit codes stay 0/2/3: what failed was not the command line


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "settings_from", "validate"]
