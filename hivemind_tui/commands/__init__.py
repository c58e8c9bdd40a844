"""Command groups of the command line; each module has a `register(registry)`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hivemind_tui.commands.base import CommandRegistry


def register_all(registry: CommandRegistry) -> None:
    from hivemind_tui.commands import (
        config_cmd,
        nodes_cmd,
        pool_cmd,
        serve_cmd,
        session_cmd,
        status_cmd,
        tasks_cmd,
        tls_cmd,
        vpn_cmd,
        worker_cmd,
    )

    session_cmd.register(registry)
    status_cmd.register(registry)
    nodes_cmd.register(registry)
    tasks_cmd.register(registry)
    vpn_cmd.register(registry)
    pool_cmd.register(registry)
    tls_cmd.register(registry)
    serve_cmd.register(registry)
    worker_cmd.register(registry)
    config_cmd.register(registry)
