"""The dashboard's charts say their range and span, and the busiest nodes show as bars."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from tests.ui.demo_shots import demo_app, record_calls, settle


async def test_chart_titles_carry_their_scale_and_the_busiest_nodes_are_listed() -> None:
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        cpu = str(app.screen.query_one("#cpu-title", Static).render())
        done = str(app.screen.query_one("#done-title", Static).render())
        assert cpu == "Cluster CPU · 60 min · 30-79%" and done == "Done per 30 s · 60 min · max 6"
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
        repainted = record_calls(monkeypatch, Widget, "refresh", lambda w, *_, **__: f"{type(w).__name__}#{w.id}")
        for _ in range(3):
            app.action_refresh()
            await settle(pilot)
        assert repainted == []
        app.backend.change_nodes(0.5, 1)
        app.action_refresh()
        await settle(pilot)
        assert repainted and not any(name.endswith("Screen#None") for name in repainted), repainted


async def test_a_clock_tick_repaints_the_clock_alone_without_laying_the_screen_out(monkeypatch) -> None:
    """The header's clock changes every minute: as wide as before, it repaints its own cells. It asked for a
    layout pass of the whole screen instead, most of what an idle console spent (a pass a second)."""
    from textual.widget import Widget

    from hivemind_tui.ui.widgets.header import ConsoleHeader

    app = demo_app(nodes=1000)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        calls = record_calls(
            monkeypatch, Widget, "refresh", lambda w, *_, layout=False, **__: (f"{type(w).__name__}#{w.id}", layout)
        )
        header = app.screen.query_one(ConsoleHeader)
        for _ in range(3):
            app.backend.clock.now += 60
            header.tick()
            await pilot.pause()
        assert calls == [("Static#clock", False)] * 3
        clock = str(app.screen.query_one("#clock", Static).render())
        assert clock == "12:03 UTC", clock


def test_the_header_clock_ticks_at_each_minute_and_not_between() -> None:
    """An idle console's clock was a repaint, a write to the terminal and a wake-up of the loop every second:
    a quarter of its CPU (1.03% of a core against 0.67-0.78% ticking once a minute, live, 1,000 nodes). The
    clock shows minutes, as tmux's does, and the next tick is set for the next minute's first moment."""
    from hivemind_tui.ui.widgets.header import until_next_minute

    minute = 1_795_780_800.0  # a minute's first moment
    assert until_next_minute(minute) == 60.0
    assert until_next_minute(minute + 45.5) == 14.5
    assert until_next_minute(minute + 59.999) == pytest.approx(0.001, abs=1e-6)


async def test_a_refresh_that_changes_figures_but_no_size_repaints_without_laying_the_screen_out(
    monkeypatch,
) -> None:
    """An idle live console: each refresh moves this host's figures and the pool's latency, and each such
    change of text asked for a layout pass of the whole screen, which then painted every widget (two passes a
    refresh). Text of the same size repaints its own cells; a panel that grows a line still lays the screen
    out."""
    from dataclasses import replace

    from textual.screen import Screen

    import tests.ui.demo as demo

    app = demo_app(nodes=1000)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        layouts = record_calls(monkeypatch, Screen, "_refresh_layout", lambda screen, *_, **__: type(screen).__name__)
        sample = app.backend.host()
        widths = [len(line) for line in str(app.screen.query_one("#host", Static).render()).splitlines()]
        moved = replace(sample, cpu_percent=87.5, process_cpu_percent=13.5, net_sent_rate=5.0, disk_read_rate=3e6)
        monkeypatch.setattr(app.backend, "host", lambda: moved)
        monkeypatch.setattr(demo, "LATENCY_MS", 2.7)
        app.action_refresh()
        await settle(pilot)
        host = str(app.screen.query_one("#host", Static).render())
        latency = str(app.screen.query_one("#card-latency", Static).render())
        assert " 88%" in host and "console CPU  13.5%" in host and "2.7 ms" in latency, (host, latency)
        assert "↑      5 B/s" in host and "r   3.0 MB/s" in host, host
        assert [len(line) for line in host.splitlines()] == widths, "figures keep their columns"
        assert layouts == []

        alerts = app.backend.refresh

        async def one_more_alert() -> object:
            snap = await alerts()
            snap.active_alerts.append(replace(snap.active_alerts[0], id=3, subject="worker-00008"))
            return snap

        monkeypatch.setattr(app.backend, "refresh", one_more_alert)
        app.action_refresh()
        await settle(pilot)
        assert "Alerts (3)" in str(app.screen.query_one("#alerts", Static).render())
        assert layouts, "a panel one line taller must lay the screen out"
