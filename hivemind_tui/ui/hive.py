"""Typed access to the running console from any screen or widget.

Textual types `widget.app` as `App[Any]`, which hides the console's own attributes (backend, snapshot,
readonly) from the type checker; this one cast says once which app every screen runs in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.message_pump import MessagePump

if TYPE_CHECKING:
    from hivemind_tui.ui.app import HivemindApp


def hive_of(node: MessagePump) -> HivemindApp:
    return cast("HivemindApp", node.app)
