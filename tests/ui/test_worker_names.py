"""Workers are named, never described by their arguments: Textual otherwise makes a worker's name from the
repr of every argument, so a login's worker carried the password, and every refresh formatted the whole
snapshot (28 MB of text for 100,000 tasks)."""

from __future__ import annotations

import ast
from pathlib import Path

from hivemind_tui.core.config import Settings
from hivemind_tui.services.monitor import ClusterSnapshot
from tests.ui.demo import DemoBackend
from tests.ui.demo_shots import settle

UI = Path(__file__).resolve().parents[2] / "hivemind_tui" / "ui"


class Formatted(list):  # type: ignore[type-arg]
    """The snapshot's task list, counting how often it is formatted."""

    times = 0

    def __repr__(self) -> str:
        Formatted.times += 1
        return "[...]"


class CountingBackend(DemoBackend):
    async def refresh(self) -> ClusterSnapshot:
        snap = await super().refresh()
        snap.tasks = Formatted(snap.tasks)
        return snap


async def test_no_screen_formats_the_snapshot() -> None:
    from hivemind_tui.ui.app import HivemindApp

    backend = CountingBackend(Settings(refresh_interval=3600.0))
    app = HivemindApp(backend, deterministic=True, start="dashboard")
    async with app.run_test(size=(120, 40)) as pilot:
        for key in ("t", "enter", "escape", "d"):
            await pilot.press(key)
            await settle(pilot)
            app.action_refresh()
            await settle(pilot)
    assert Formatted.times == 0


def test_every_worker_with_arguments_has_a_description() -> None:
    missing = []
    for path in UI.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            arguments = [a for a in node.args.args + node.args.kwonlyargs if a.arg != "self"]
            for decorator in node.decorator_list:
                is_work = isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "work"
                if is_work and arguments and not any(k.arg == "description" for k in decorator.keywords):
                    missing.append(f"{path.name}:{node.lineno} {node.name}")
    assert missing == []
