"""What every command shares: the `Context` a handler gets, the `Result` it returns, and the registry
through which each command module adds its subcommands. Kept apart from `cli.py`, which imports the
command modules, so that they never import it back."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NoReturn

from hivemind_tui.core.config import LoadedSettings, Settings
from hivemind_tui.core.datadir import DataDir
from hivemind_tui.core.errors import ExitCode, UsageError


@dataclass
class Result:
    """What a command produced: `data` for --json, `text` for people (both describe the same thing)."""

    data: dict[str, Any]
    # Or a function that makes it: a long table is not formatted for a --json run that never shows it.
    text: str | Callable[[], str] = ""
    exit_code: ExitCode = ExitCode.OK

    @property
    def shown(self) -> str:
        return self.text() if callable(self.text) else self.text


@dataclass
class Context:
    """What every handler needs: parsed arguments, settings with their sources, and the data dir."""

    args: argparse.Namespace
    loaded: LoadedSettings

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    @cached_property
    def data_dir(self) -> DataDir:
        return DataDir.from_settings(self.settings)

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    def warn(self, text: str) -> None:
        """Warnings and progress go to stderr, so stdout stays one JSON document with --json."""
        print(text, file=sys.stderr, flush=True)


Handler = Callable[[Context], Result | Coroutine[Any, Any, Result]]


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors follow the --json error rules."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("hivemind-tui").strip()
        raise UsageError(f"{where}: {message}" if where else message)


class CommandRegistry:
    """Adds commands (and command groups) that all accept the global options."""

    def __init__(self, subparsers: argparse._SubParsersAction[Parser], parent: Parser) -> None:
        self._subparsers = subparsers
        self._parent = parent

    def command(self, name: str, handler: Handler, help: str, description: str | None = None) -> Parser:
        parser = self._subparsers.add_parser(name, help=help, description=description or help, parents=[self._parent])
        parser.set_defaults(handler=handler)
        return parser

    def group(self, name: str, help: str) -> CommandRegistry:
        parser = self._subparsers.add_parser(name, help=help, description=help, parents=[self._parent])
        parser.set_defaults(handler=None, group_parser=parser)
        sub = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", parser_class=Parser)
        return CommandRegistry(sub, self._parent)
