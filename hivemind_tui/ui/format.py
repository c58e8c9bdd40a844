"""Small text helpers for the screens: ages, sizes, rates, bars. Pure functions, easy to test."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from textual.markup import escape

from hivemind_tui.core.timefmt import age

__all__ = ["age", "bar", "clock_text", "duration", "minute_clock_text", "rate", "series", "size", "when"]

ASCII = os.environ.get("HIVEMIND_ASCII", "") == "1"
FULL, EMPTY = ("#", "-") if ASCII else ("█", "░")


def plain(value: object) -> str:
    """Text from a user, a task, a node or a pool, made safe to place inside console markup: shown as it
    is, never parsed (a peer named `ops[/i]box` or a message holding `[@click=app.quit]` stays text)."""
    return escape(str(value))


def clock_text(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")


def minute_clock_text(ts: float) -> str:
    """The header's clock: minutes, as tmux's status line shows them (seconds cost a repaint a second)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M UTC")


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M") if ts else "-"


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def rate(n: float) -> str:
    return size(n) + "/s"


def bar(percent: float, width: int) -> str:
    filled = round(max(0.0, min(100.0, percent)) / 100 * width)
    return FULL * filled + EMPTY * (width - filled)


def duration(start: float | None, end: float | None) -> str:
    if not start or not end:
        return "-"
    s = int(end - start)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def series(values: list[float]) -> list[float]:
    """Sparkline data: one sample would draw as a full bar, so fewer than two draw as an empty baseline."""
    return list(values) if len(values) > 1 else []
