"""Workers started with a snapshot of the cluster, that let go of it when they end.

Textual's `@work` runs a method through a `partial` of it and its arguments, and the worker keeps that
partial. A finished worker is a reference cycle (its task's context holds the worker), freed only when the
collector goes through the generation it reached, which a console with a large heap seldom does on its own
(core/heap.py sweeps at most once a minute): each refresh's snapshot (every node of the fleet, every task)
stayed alive in the worker that showed it until then. The soak's console
held a dozen snapshots of 1,000 nodes at a time that way. `@snapshot_work` runs the coroutine itself: its
arguments go with its frame when it ends, and the worker that stays keeps nothing of the cluster. (The cycle
itself is broken when a worker's run ends, ui/textual_fixes.py `workers_let_go_of_themselves`; the snapshot
still goes first, with the frame, whoever holds the worker after.)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar

from textual.dom import DOMNode
from textual.worker import Worker

P = ParamSpec("P")
Node = TypeVar("Node", bound=DOMNode)


def snapshot_work(
    *, group: str, description: str
) -> Callable[
    [Callable[Concatenate[Node, P], Coroutine[Any, Any, None]]], Callable[Concatenate[Node, P], Worker[None]]
]:
    """As `@work(exclusive=True, group=..., exit_on_error=False, description=...)`: a newer call cancels the
    one still running (a newer snapshot makes it moot)."""

    def decorate(
        method: Callable[Concatenate[Node, P], Coroutine[Any, Any, None]],
    ) -> Callable[Concatenate[Node, P], Worker[None]]:
        @wraps(method)
        def start(node: Node, /, *args: P.args, **kwargs: P.kwargs) -> Worker[None]:
            return node.run_worker(
                method(node, *args, **kwargs),
                name=method.__name__,
                group=group,
                description=description,
                exclusive=True,
                exit_on_error=False,
            )

        return start

    return decorate
