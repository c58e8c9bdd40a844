"""The console's header: pool, connection, latency, user and role, clock; and the outage banner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from hivemind_tui.ui.format import age, minute_clock_text, plain
from hivemind_tui.ui.hive import hive_of, watch_app
from hivemind_tui.ui.static_text import ShownTexts

if TYPE_CHECKING:
    from hivemind_tui.services.monitor import ClusterSnapshot


def until_next_minute(now: float) -> float:
    """Seconds from `now` to the first moment of the next minute (a clock showing minutes ticks there: a
    timer of 60 s from when the console started would show each minute up to a minute late)."""
    return 60.0 - now % 60.0


class ConsoleHeader(Horizontal):
    """Reads the app's snapshot; the screens never update it themselves."""

    def __init__(self) -> None:
        super().__init__()
        self._texts = ShownTexts(self)

    def _set(self, part: str, text: str) -> None:
        """Only a changed part is updated: the clock changes every minute, the rest rarely. A part as wide
        as before repaints its own cells (a layout pass a second for the clock was most of an idle console's
        CPU)."""
        self._texts.set(f"#{part}", text)

    def compose(self) -> ComposeResult:
        yield Static("HiveMind", id="brand")
        yield Static("", id="pool")
        yield Static("", id="transfers")
        yield Static("", id="who")
        yield Static("", id="clock")

    def on_mount(self) -> None:
        watch_app(self, "snapshot", self.show, init=True)
        watch_app(self, "paused", lambda _: self.show(hive_of(self).snapshot), init=False)
        watch_app(self, "upload_progress", lambda _: self.show_transfers(), init=False)
        watch_app(self, "download_progress", lambda _: self.show_transfers(), init=False)
        self.tick()
        if not getattr(self.app, "deterministic", False):
            self._next_tick()

    def _next_tick(self) -> None:
        self.set_timer(until_next_minute(hive_of(self).backend.clock()), self._tick_and_go_on)

    def _tick_and_go_on(self) -> None:
        self.tick()
        self._next_tick()

    def tick(self) -> None:
        self._set("clock", minute_clock_text(hive_of(self).backend.clock()))

    def show(self, snap: ClusterSnapshot | None) -> None:
        backend = hive_of(self).backend
        state = backend.connection
        now = backend.clock()
        if state.status == "connected":
            words = f"[b green]● connected[/] {state.latency_ms:.1f} ms" if state.latency_ms else "[green]●[/]"
        elif state.status == "reconnecting":
            retry = max(0, int((state.next_retry_at or now) - now))
            words = f"[b yellow]◐ reconnecting in {retry} s[/]"
        elif state.status == "disconnected":
            words = f"[b red]○ disconnected {age(state.since, now)}[/]"
        else:
            words = "[dim]… connecting[/]"
        if hive_of(self).paused:
            last = snap.tasks_at or snap.nodes_at if snap else None
            data = f" · data {age(last, now)} old" if last else ""
            words = f"[b yellow]❚❚ paused[/]{data} (p resumes)"
        self._set("pool", f"{plain(backend.address)}  {words}")
        role = backend.role or "-"
        self._set("who", f"{plain(backend.username or 'not logged in')} ({plain(role)})")
        self.tick()

    def show_transfers(self) -> None:
        app = hive_of(self)
        parts = [
            f"{arrow} {p.subtasks_done}/{p.subtasks_total}"
            for arrow, p in (("↑", app.upload_progress), ("↓", app.download_progress))
            if p is not None
        ]
        self._set("transfers", " " + "  ".join(parts) + " " if parts else "")


class OutageBanner(Static):
    """Shown while the pool is away: the last known data stays on screen, with its age."""

    def on_mount(self) -> None:
        watch_app(self, "snapshot", self.show, init=True)

    def show(self, snap: ClusterSnapshot | None) -> None:
        backend = hive_of(self).backend
        state = backend.connection
        if snap is None or state.status in ("connected", "unknown"):
            self.display = False
            return
        now = backend.clock()
        last = snap.tasks_at or snap.nodes_at
        shown = f"Showing data from {age(last, now)} ago" if last else "No data from it yet"
        retry = max(0, int((state.next_retry_at or now) - now))
        self.update(
            f"⚠ The Node Pool at {plain(backend.address)} cannot be reached (since {age(state.since, now)} ago). "
            f"{shown}; next try in {retry} s."
        )
        self.display = True
