"""The command line: global options, output rules and exit codes, and the one entry point `main()`.

Each command group lives in `hivemind_tui/commands/` and registers its subcommands through the
`CommandRegistry` of `commands/base.py`; a handler gets a `Context` and returns a `Result` (a JSON document
plus its human text), or raises a `HivemindError`, whose class carries the exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

from hivemind_tui import __version__
from hivemind_tui.commands.base import CommandRegistry, Context, Handler, Parser, Result
from hivemind_tui.core.config import load_settings
from hivemind_tui.core.errors import ExitCode, HivemindError, UsageError
from hivemind_tui.core.logging_setup import configure_logging, quiet_grpc_core

log = logging.getLogger(__name__)


def _global_options(suppress: bool) -> Parser:
    """The options valid before and after any command.

    Subcommands get copies whose defaults are SUPPRESS, so a value given before the command is not
    overwritten by the subparser's default (the README: global options work before or after the command).
    """
    parent = Parser(add_help=False)
    default: Any = argparse.SUPPRESS if suppress else None
    group = parent.add_argument_group("global options")
    group.add_argument("--pool", metavar="ADDR", default=default, help="Node Pool HOST:PORT (empty: embedded)")
    group.add_argument("--data-dir", metavar="DIR", default=default, help="data dir (stores, tokens, logs)")
    group.add_argument("--config", metavar="FILE", default=default, type=Path, help="settings file (TOML)")
    group.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="print exactly one JSON document on stdout",
    )
    group.add_argument(
        "--readonly",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="change nothing: act as a viewer",
    )
    return parent


def build_parser(with_commands: bool = True, word: str | None = None) -> Parser:
    """The whole command line; without commands (the console's fast path) only the top-level options; with
    `word`, only the commands of the module that registers it (`commands.register_all`)."""
    parser = Parser(
        prog="hivemind-tui",
        description="The HiveMind Master Node: a terminal console and one-shot commands with JSON output.",
        parents=[_global_options(suppress=False)],
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument(
        "--keep-pool", action="store_true", help="console: leave an embedded pool it started running on exit"
    )
    parser.add_argument(
        "--session-file",
        metavar="FILE",
        type=Path,
        help="console: the session to use instead of the remembered login (`serve` hands one to each browser)",
    )
    parser.set_defaults(handler=None)
    if with_commands:
        from hivemind_tui.commands import register_all

        subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
        register_all(CommandRegistry(subparsers, _global_options(suppress=True)), word)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse; the bare console invocation skips importing every command's modules (it paints sooner), and
    a command imports only its own module (the first word left after the global options names it)."""
    if "-h" not in argv and "--help" not in argv:
        light = build_parser(with_commands=False)
        try:
            args, rest = light.parse_known_args(argv)
        except UsageError:
            return build_parser().parse_args(argv)
        if not rest:
            return args
        return build_parser(word=rest[0]).parse_args(argv)
    return build_parser().parse_args(argv)


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "pool_address": getattr(args, "pool", None),
        "data_dir": getattr(args, "data_dir", None),
        "readonly": True if getattr(args, "readonly", False) else None,
    }


def _emit(result: Result, as_json: bool) -> None:
    # Here, not at the top: the console's first frame does without it.
    from hivemind_tui.core.json_out import write_json

    if as_json:
        write_json(result.data, sys.stdout)
        sys.stdout.write("\n")
    elif text := result.shown:
        sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()


def _emit_error(error: HivemindError, as_json: bool) -> None:
    import json

    if as_json:
        sys.stdout.write(json.dumps({"error": {"code": error.code, "message": error.message}}) + "\n")
        sys.stdout.flush()
    else:
        print(f"hivemind-tui: {error.message}", file=sys.stderr, flush=True)


def run(argv: Sequence[str] | None = None) -> int:
    """Parse, load settings, run one command; return its exit code. Never lets a traceback out."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    try:
        args = parse(argv)
        as_json = bool(args.json)
        if args.version:
            _emit(Result({"version": __version__}, f"hivemind-tui {__version__}"), as_json)
            return ExitCode.OK
        handler: Handler | None = args.handler
        if handler is None:
            group_parser = getattr(args, "group_parser", None)
            if group_parser is not None:
                raise UsageError(f"{group_parser.prog} needs a command\n{group_parser.format_usage()}")
            handler = _default_handler()
        else:
            gc.enable()  # a command (some run for days: `pool serve`, `worker`); see main()
        loaded = load_settings(config_file=args.config, flags=_flags(args))
        ctx = Context(args, loaded)
        ctx.data_dir.ensure()
        configure_logging(ctx.data_dir.logs, getattr(args, "process_kind", "cli"), loaded.settings.log_level)
        # The command's name only: its arguments may hold a join token or a password file's contents.
        group = getattr(handler, "__module__", "").rpartition(".")[2].removesuffix("_cmd")
        log.info("command %s %s", group, getattr(handler, "__qualname__", "?").rpartition(".")[2].removesuffix("_cmd"))
        outcome = handler(ctx)
        result = outcome if isinstance(outcome, Result) else run_command(outcome)
        _emit(result, as_json)
        return result.exit_code
    except HivemindError as error:
        log.info("failed: %s %s", error.code, error.message)
        _emit_error(error, as_json)
        return error.exit_code
    except KeyboardInterrupt:
        return 130


def run_command(outcome: Awaitable[Result]) -> Result:
    """`asyncio.run` with the command's result kept beside its task, not as the task's result. On its way out,
    Python 3.11's runner puts back the SIGINT handler and looks the old one (which holds the main task) up as
    an enum; the failed lookup formats the task's repr, result included: 0.8 s for a 100,000-task list."""
    kept: list[Result] = []

    async def command() -> None:
        kept.append(await outcome)

    asyncio.run(command())
    return kept[0]


def _default_handler() -> Handler:
    """Without a command the console starts (with --json, or with no terminal, the help is the answer)."""

    def console_or_help(ctx: Context) -> Result:
        # textual-serve runs the console on a pipe, through Textual's web driver: that is a console too.
        if ctx.json or (not sys.stdout.isatty() and not os.environ.get("TEXTUAL_DRIVER")):
            gc.enable()
            text = build_parser().format_help()
            return Result({"help": text}, text)
        from hivemind_tui.commands.console_cmd import run_console

        return run_console(ctx)

    return console_or_help


def main() -> None:
    # Start-up allocates many objects that live as long as the process; collecting them while importing is
    # wasted work. Collection is back on once a command starts, or after the console's first frame.
    gc.disable()
    quiet_grpc_core()
    sys.exit(run())
