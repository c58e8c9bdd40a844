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


async def test_a_refresh_that_changes_nothing_repaints_nothing(monkeypatch) -> None:
    """An idle console in tmux for weeks: a refresh with the same data must not redraw the screen (it did:
    the App's snapshot reactive repainted everything, about 3 KB a refresh); a changed panel repaints alone."""
    from textual.widget import Widget

    app = demo_app(nodes=1000)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        repainted: list[str] = []
        real = Widget.refresh

        def spy(self: Widget, *args: object, **kwargs: object) -> Widget:
            repainted.append(f"{type(self).__name__}#{self.id}")
            return real(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Widget, "refresh", spy)
        for _ in range(3):
            app.action_refresh()
            await settle(pilot)
        assert repainted == []
        app.backend.change_nodes(0.5, 1)
        app.action_refresh()
        await settle(pilot)
        assert repainted and not any(name.endswith("Screen#None") for name in repainted), repainted
