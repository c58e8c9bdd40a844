"""Command groups of the command line; each module has a `register(registry)`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hivemind_tui.cli import CommandRegistry


def register_all(registry: CommandRegistry) -> None:
    from hivemind_tui.commands import config_cmd, pool_cmd, worker_cmd

    config_cmd.register(registry)
    pool_cmd.register(registry)
    worker_cmd.register(registry)
