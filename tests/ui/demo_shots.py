"""The demo screens: apps on the fixture source with a fixed clock, and the keys that bring each screen up.

One table (`SHOTS`) serves the snapshot tests and `scripts/screenshots.py`, so they never drift apart.
Run from the repository root: the upload screen browses `tests/ui/demo_files`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from textual.pilot import Pilot
from textual.widgets import DirectoryTree
from textual.worker import WorkerCancelled, WorkerFailed

from hivemind_tui.core.config import Settings
from hivemind_tui.ui.app import HivemindApp
from tests.ui.demo import DemoBackend

DEMO_FILES = "tests/ui/demo_files"


def demo_app(
    logged_in: bool = True,
    role: str = "admin",
    nodes: int = 12,
    start: str = "dashboard",
    reachable: bool = True,
    readonly: bool = False,
) -> HivemindApp:
    settings = Settings(refresh_interval=3600.0, upload_folder=DEMO_FILES, readonly=readonly)
    backend = DemoBackend(settings, nodes=nodes, logged_in=logged_in, role=role, reachable=reachable)
    return HivemindApp(backend, deterministic=True, start=start)


async def settle(pilot: Pilot, rounds: int = 3) -> None:
    """Let the screen's workers finish (not DirectoryTree's loader, which lives as long as the tree)."""
    for _ in range(rounds):
        await pilot.pause()
        for worker in [w for w in pilot.app.workers if not isinstance(w.node, DirectoryTree) and not w.is_finished]:
            with contextlib.suppress(WorkerCancelled, WorkerFailed):
                await worker.wait()
    await pilot.pause(0.2)


def keys(*presses: str) -> Callable[[Pilot], Awaitable[None]]:
    async def run(pilot: Pilot) -> None:
        await settle(pilot)
        for key in presses:
            await pilot.press(key)
            await settle(pilot)

    return run


async def upload_preview(pilot: Pilot) -> None:
    await settle(pilot)
    await pilot.press("u")
    await settle(pilot)
    screen = pilot.app.screen
    from textual.widgets import Input

    screen.query_one("#zip-path", Input).value = f"{DEMO_FILES}/etl-job.zip"
    await pilot.press("enter")  # reads the manifest (its type, priority, shards), then previews the split
    await settle(pilot)


@dataclass(frozen=True)
class Shot:
    name: str
    make: Callable[[], HivemindApp]
    before: Callable[[Pilot], Awaitable[None]]
    size: tuple[int, int] = (100, 30)


SHOTS = [
    Shot("login", lambda: demo_app(logged_in=False), keys()),
    Shot("dashboard", demo_app, keys()),
    Shot("upload_preview", demo_app, upload_preview),
    Shot("tasks", lambda: demo_app(start="tasks"), keys()),
    Shot("task_details_logs", lambda: demo_app(start="tasks"), keys("enter")),
    Shot("node_monitor", lambda: demo_app(start="nodes"), keys()),
    Shot("node_details", lambda: demo_app(start="nodes"), keys("enter")),
    Shot("vpn_peer_qr", lambda: demo_app(start="vpn"), keys("enter")),
    Shot("help", demo_app, keys("question_mark")),
]


def record_calls(monkeypatch: pytest.MonkeyPatch, owner: type, name: str, note: Callable[..., object]) -> list[object]:
    """What `note(self, *args, **kwargs)` makes of each call of `owner.name` from now on; each call still runs."""
    noted: list[object] = []
    real = getattr(owner, name)

    def spy(self: object, *args: object, **kwargs: object) -> object:
        noted.append(note(self, *args, **kwargs))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return noted
