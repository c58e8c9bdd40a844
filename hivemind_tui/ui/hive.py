"""Typed access to the running console from any screen or widget.

Textual types `widget.app` as `App[Any]`, which hides the console's own attributes (backend, snapshot,
readonly) from the type checker; this one cast says once which app every screen runs in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from textual.dom import DOMNode
from textual.message_pump import MessagePump

if TYPE_CHECKING:
    from hivemind_tui.ui.app import HivemindApp


def hive_of(node: MessagePump) -> HivemindApp:
    return cast("HivemindApp", node.app)


def forget_gone_watchers(obj: DOMNode) -> None:
    """Drop the watchers of `obj`'s reactives whose nodes are gone.

    Textual forgets a removed node's watcher of another object only when that reactive next changes, and
    some never change: the App's `paused` or `upload_progress` for days, a Footer's `compact` for ever (each
    FooterKey it composes binds to it). Every dismissed screen that watched the App (with all its widgets),
    and every FooterKey of every recompose, stayed in memory. Textual keeps these watchers in the watched
    object's `__watchers`; this is the one place that reads it.
    """
    for watchers in getattr(obj, "__watchers", {}).values():
        watchers[:] = [(n, c) for n, c in watchers if n.is_attached and not n._closing]


def watch_app(node: DOMNode, attribute: str, callback: Callable[[Any], None], init: bool = True) -> None:
    """`node.watch(node.app, attribute, callback)`, after dropping the App's watchers whose nodes are gone."""
    forget_gone_watchers(node.app)
    node.watch(node.app, attribute, callback, init=init)
