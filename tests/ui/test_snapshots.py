"""SVG snapshots from the fixture source (fixed data, ids, clock and latency), so every byte is stable."""

from __future__ import annotations

import pytest

from tests.ui.demo_shots import SHOTS, demo_app, keys


@pytest.mark.parametrize("size", [(100, 30), (80, 24)], ids=["100x30", "80x24"])
def test_login(snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(demo_app(logged_in=False), terminal_size=size, run_before=keys())


@pytest.mark.parametrize("size", [(100, 30), (80, 24)], ids=["100x30", "80x24"])
def test_dashboard(snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(demo_app(), terminal_size=size, run_before=keys())


def test_dashboard_during_an_outage(snap_compare) -> None:
    assert snap_compare(demo_app(reachable=False), terminal_size=(100, 30), run_before=keys())


@pytest.mark.parametrize("shot", [s for s in SHOTS if s.name not in ("login", "dashboard")], ids=lambda s: s.name)
def test_screen(snap_compare, shot) -> None:
    assert snap_compare(shot.make(), terminal_size=shot.size, run_before=shot.before)


def test_vpn_as_operator(snap_compare) -> None:
    assert snap_compare(demo_app(start="vpn", role="operator"), terminal_size=(100, 30), run_before=keys())
