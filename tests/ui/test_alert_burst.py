"""A refresh that raises many alerts at once (1,000 nodes gone with their network) says so in a few toasts.

It showed one toast per alert: 1,000 toast widgets at once, 44 MB that the console kept, and a screen that
toasts covered for the next 8 seconds."""

from __future__ import annotations

from hivemind_tui.core.config import Settings
from hivemind_tui.services.alerts import Alert
from hivemind_tui.services.monitor import ClusterSnapshot
from hivemind_tui.ui.app import MAX_ALERT_TOASTS, HivemindApp
from tests.ui.demo import DemoBackend
from tests.ui.demo_shots import settle


class Burst(DemoBackend):
    def __init__(self, raised: int) -> None:
        super().__init__(Settings(refresh_interval=3600.0, upload_folder="tests/ui/demo_files"))
        self.raise_count = raised

    async def refresh(self) -> ClusterSnapshot:
        snap = await super().refresh()
        snap.raised = [
            Alert(i, f"node_offline:n{i}", "node_offline", f"n{i}", f"node n{i} is offline", 0.0, None)
            for i in range(self.raise_count)
        ]
        return snap


async def toasts_after_refresh(raised: int) -> list[str]:
    app = HivemindApp(Burst(raised), deterministic=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        return [n.message for n in app._notifications]  # what the toasts show, shown or queued


async def test_a_burst_of_alerts_is_summed_up() -> None:
    shown = await toasts_after_refresh(1000)
    assert len(shown) == MAX_ALERT_TOASTS
    assert "node n0 is offline" in shown[0]
    assert "and 998 more alerts" in shown[-1] and "dashboard" in shown[-1]


async def test_a_few_alerts_each_get_their_toast() -> None:
    shown = await toasts_after_refresh(MAX_ALERT_TOASTS)
    assert shown == [f"node n{i} is offline" for i in range(MAX_ALERT_TOASTS)]
