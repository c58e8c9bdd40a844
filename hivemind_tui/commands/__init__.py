"""Command groups of the command line; each module has a `register(registry)`.

A run of one command imports only the module that registers it (`register_all(registry, word)`): importing
all of them (TLS with `cryptography`, the web face, the pool) cost every `tasks list` about 0.1 s."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hivemind_tui.commands.base import CommandRegistry

# In the order `--help` lists them.
MODULES = (
    "session_cmd",
    "status_cmd",
    "nodes_cmd",
    "tasks_cmd",
    "vpn_cmd",
    "pool_cmd",
    "tls_cmd",
    "serve_cmd",
    "worker_cmd",
    "config_cmd",
)
# The first word of each command and the module that registers it (a test checks this against the modules).
WORDS = {
    "login": "session_cmd",
    "logout": "session_cmd",
    "whoami": "session_cmd",
    "balance": "session_cmd",
    "transfer": "session_cmd",
    "health": "status_cmd",
    "status": "status_cmd",
    "watch": "status_cmd",
    "alerts": "status_cmd",
    "prune": "status_cmd",
    "audit": "status_cmd",
    "nodes": "nodes_cmd",
    "tasks": "tasks_cmd",
    "vpn": "vpn_cmd",
    "pool": "pool_cmd",
    "tls": "tls_cmd",
    "serve": "serve_cmd",
    "worker": "worker_cmd",
    "config": "config_cmd",
}


def register_all(registry: CommandRegistry, word: str | None = None) -> None:
    """Every command, or only those of the module that registers `word` when it names one (an unknown word
    gets them all, so that the usage error lists every command)."""
    for name in (WORDS[word],) if word in WORDS else MODULES:
        importlib.import_module(f"hivemind_tui.commands.{name}").register(registry)
