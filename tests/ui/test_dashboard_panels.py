"""The dashboard's charts say their range and span, and the busiest nodes show as bars."""

from __future__ import annotations

from textual.widgets import Static

from tests.ui.demo_shots import demo_app, settle


async def test_chart_titles_carry_their_scale_and_the_busiest_nodes_are_listed() -> None:
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        cpu = str(app.screen.query_one("#cpu-title", Static).render())
        done = str(app.screen.query_one("#done-title", Static).render())
        assert cpu == "Cluster CPU · 60 min · 30-79%" and done == "Done a refresh · 60 min · max 6"
        busiest = str(app.screen.query_one("#busiest", Static).render()).splitlines()
        assert busiest[0].startswith("Busiest nodes")
        assert [line.split()[0] for line in busiest[1:3]] == ["worker-00010", "worker-00003"]  # 96% and 87% CPU
        assert "96%" in busiest[1] and "█" in busiest[1]
