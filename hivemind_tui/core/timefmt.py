"""Short ages for people ("42s", "5m", "3h", "2d"), shared by the command line and the console."""

from __future__ import annotations


def age(ts: float | None, now: float) -> str:
    if not ts:
        return "-"
    seconds = max(0, int(now - ts))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"
