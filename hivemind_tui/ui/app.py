"""The console: sections as modes, one refresh loop for all of them, login over whatever is on screen.

Built by `build_app()` from a backend (live or demo), the same for the command line, the tests and the
screenshot script. The backend is opened in `on_mount`, inside the app's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Iterable
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.timer import Timer

from hivemind_tui.core.errors import HivemindError, NotAuthenticatedError
from hivemind_tui.core.heap import TRIM_EVERY, OldGarbageSweeper, give_back_freed_memory
from hivemind_tui.ui.screens.login import LoginScreen
from hivemind_tui.ui.textual_fixes import (
    component_styles_kept,
    compositor_maps_freed_at_once,
    release_styles_caches,
    strips_do_not_cache_themselves,
    text_widths_uncached,
    thread_jobs_keep_nothing,
    workers_let_go_of_themselves,
)
from hivemind_tui.ui.worker_errors import ReportsWorkerErrors

if TYPE_CHECKING:
    from textual.driver import Driver

    from hivemind_tui.services.alerts import Alert
    from hivemind_tui.services.monitor import ClusterSnapshot
    from hivemind_tui.services.task_manager import Progress, SubmitOptions
    from hivemind_tui.ui.backend import ConsoleBackend

log = logging.getLogger(__name__)

INTERVALS = (2.0, 5.0, 10.0, 30.0, 60.0)
# Toasts for the alerts one refresh raises; past these, the last one counts the rest. A network that drops
# 1,000 nodes at once raised 1,000 toasts.
MAX_ALERT_TOASTS = 3


def lazy_screen(module: str, name: str) -> Callable[[], Screen[Any]]:
    """Sections are imported when first shown, so the login screen paints without them."""

    def make() -> Screen[Any]:
        screen: Screen[Any] = getattr(import_module(f"hivemind_tui.ui.screens.{module}"), name)()
        # Its widgets are styled as they mount, with the CSS as it is now. Textual counts a new screen as
        # styled before every change of theme, and so parsed every source and styled every widget of the app
        # again, twice, at each section's first display (~25-60 ms for nothing): its count says otherwise.
        screen._css_update_count = screen.app._css_update_count
        return screen

    return make


class HivemindApp(ReportsWorkerErrors, App[None]):
    # Every screen's styles are loaded with the app's (about 10 ms of parsing): the login, as the first
    # screen, is never pushed, and only pushed screens load their CSS_PATH; and a screen that loads its own
    # file makes Textual parse every source again and style every widget again (~25 ms of each section's
    # first display). Each screen still names its file in its own CSS_PATH, which then finds it loaded.
    CSS_PATH = ["app.tcss", *sorted(f"screens/{p.name}" for p in (Path(__file__).parent / "screens").glob("*.tcss"))]
    TITLE = "HiveMind"
    MODES = {
        "dashboard": lazy_screen("dashboard", "DashboardScreen"),
        "tasks": lazy_screen("tasks", "TasksScreen"),
        "nodes": lazy_screen("nodes", "NodesScreen"),
        "vpn": lazy_screen("vpn", "VpnScreen"),
    }
    # Every screen's footer shows its own keys first; the app-wide ones stay out of it (they are in `?`, and
    # the dashboard's footer shows the sections), so no footer is cut off at 80 or 100 columns.
    BINDINGS = [
        Binding("d", "section('dashboard')", "Dashboard", show=False),
        Binding("t", "section('tasks')", "Tasks", show=False),
        Binding("n", "section('nodes')", "Nodes", show=False),
        Binding("v", "section('vpn')", "VPN", show=False),
        Binding("u", "upload", "Upload", show=False),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("p", "pause", "Pause", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit", show=False),
        Binding("colon", "jump", "Jump", key_display=":", show=False),
        Binding("ctrl+c", "copy_or_quit", "Quit", show=False, priority=True),
    ]

    # repaint=False: a reactive of the App repaints the whole screen when it changes; the screens repaint
    # what their watchers change, and an idle refresh then writes almost nothing to the terminal.
    snapshot: reactive[ClusterSnapshot | None] = reactive(None, always_update=True, repaint=False)
    paused = reactive(False, repaint=False)
    upload_progress: reactive[Progress | None] = reactive(None, repaint=False)
    download_progress: reactive[Progress | None] = reactive(None, repaint=False)

    def __init__(self, backend: ConsoleBackend, deterministic: bool = False, start: str = "dashboard") -> None:
        release_styles_caches()
        strips_do_not_cache_themselves()
        component_styles_kept()
        if not compositor_maps_freed_at_once():
            log.info("Textual's compositor is not the one compositor_maps_freed_at_once knows: left as it is")
        workers_let_go_of_themselves()
        text_widths_uncached()
        super().__init__()
        self.backend = backend
        self.deterministic = deterministic
        self.start_section = start
        self.refresh_interval = backend.settings.refresh_interval
        self._timer: Timer | None = None
        self._opened: asyncio.Future[None] | None = None
        self.sweeper = OldGarbageSweeper()

    def get_driver_class(self) -> type[Driver]:
        """Textual's choice, with its Linux driver swapped for the one whose input thread sleeps until input
        comes (`ui/quiet_driver.py`); the web face's driver and a TEXTUAL_DRIVER stay as they are."""
        chosen = super().get_driver_class()
        if (chosen.__module__, chosen.__name__) == ("textual.drivers.linux_driver", "LinuxDriver"):
            from hivemind_tui.ui.quiet_driver import QuietLinuxDriver

            return QuietLinuxDriver
        return chosen

    @property
    def readonly(self) -> bool:
        return self.backend.settings.readonly or self.backend.role == "viewer"

    def get_default_screen(self) -> Screen[Any]:
        """Without a session the first screen is the login itself, so the very first frame shows it."""
        return Screen(id="_default") if self.backend.has_session() else LoginScreen(first=True)

    def on_load(self) -> None:
        thread_jobs_keep_nothing(asyncio.get_running_loop())  # before any thread job (ui/textual_fixes.py)

    async def on_mount(self) -> None:
        self.call_after_refresh(gc.enable)  # off since `cli.main()`, so that start-up paints sooner
        if self.backend.has_session():
            await self.ready()
            await self.enter()
        else:
            # The login screen paints first; the backend opens after that frame (logging in waits for it).
            self.call_after_refresh(self._start_opening)

    def _start_opening(self) -> None:
        if self._opened is None:
            self._opened = asyncio.ensure_future(self.backend.open())

    async def ready(self) -> None:
        """Wait until the backend is open (it opens once, whoever asks first)."""
        self._start_opening()
        assert self._opened is not None
        await asyncio.shield(self._opened)

    async def enter(self) -> None:
        """Into the start section, once a session exists (the first login calls this)."""
        await self.switch_mode(self.start_section)
        self._timer = self.set_interval(self.refresh_interval, self.scheduled_refresh)
        self.action_refresh()
        self.resume_uploads()
        from hivemind_tui.services.retention import PRUNE_EVERY  # here: the login's first frame does without it

        self.set_interval(PRUNE_EVERY, self.run_prune)
        self.run_prune()
        self.set_interval(TRIM_EVERY, self.give_back_memory)

    async def on_unmount(self) -> None:
        if self._opened is not None:
            with contextlib.suppress(Exception):
                await self._opened
        await self.backend.close()

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Toasts carry text from pools, tasks and users: never markup, whatever the caller asks."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    # -- refresh ----------------------------------------------------------------------------------
    def scheduled_refresh(self) -> None:
        """The timer's refresh: none while paused."""
        if not self.paused:
            self.action_refresh()

    def action_refresh(self) -> None:
        """Start a refresh unless one is still running: a slow one (an outage) is never cut short. `r` asks
        for one even while paused."""
        if not self.backend.has_session():
            return
        if any(w.group == "refresh" and not w.is_finished for w in self.workers):
            return
        self.run_refresh()

    @work(group="refresh", exit_on_error=False)
    async def run_refresh(self) -> None:
        try:
            snap = await self.backend.refresh()
        except NotAuthenticatedError:
            self._ask_login()
            return
        except HivemindError as exc:
            self.notify(exc.message, severity="error", timeout=6)
            return
        self._notify_raised(snap.raised)
        self.snapshot = snap
        self.sweep_old_garbage()

    def sweep_old_garbage(self) -> None:
        """A refresh is what leaves cycles behind (finished workers, repainted strips): after it, the oldest
        generation is swept when it is due (core/heap.py `OldGarbageSweeper`)."""
        sweep = self.sweeper.sweep_if_due()
        if sweep is not None:
            log.info(
                "swept the oldest generation: %d objects freed in %.0f ms (%.0f ms of CPU)",
                sweep.freed,
                sweep.took * 1000,
                sweep.cpu * 1000,
            )

    def _notify_raised(self, raised: list[Alert]) -> None:
        """A toast per alert, up to a few; past them, one that counts the rest (the dashboard lists all)."""
        if len(raised) > MAX_ALERT_TOASTS:
            shown = raised[: MAX_ALERT_TOASTS - 1]
            rest = f"and {len(raised) - len(shown)} more alerts: see the dashboard's alert panel"
        else:
            shown, rest = raised, ""
        for alert in shown:
            self.notify(alert.message, title="Alert", severity="warning", timeout=8)
        if rest:
            self.notify(rest, title="Alerts", severity="warning", timeout=8)

    def _ask_login(self) -> None:
        if not isinstance(self.screen, LoginScreen):
            self.push_screen(LoginScreen(first=False), lambda ok: self.action_refresh() if ok else None)

    @work(group="prune", exclusive=True, exit_on_error=False)
    async def run_prune(self) -> None:
        """The store stays bounded while the console runs for weeks (services/retention.py)."""
        try:
            pruned = await self.backend.prune()
        except HivemindError as exc:
            log.warning("prune failed: %s", exc.message)
            return
        log.info("%s", pruned.text)

    @work(group="memory", exclusive=True, thread=True, exit_on_error=False)
    def give_back_memory(self) -> None:
        """What the console freed goes back to the system now and then: weeks in tmux keep no old peak."""
        sizes = give_back_freed_memory()
        if sizes is not None:
            log.info("freed memory given back: RSS %.0f MB -> %.0f MB", *sizes)

    @work(group="uploads", exit_on_error=False)
    async def resume_uploads(self) -> None:
        """An unfinished submit (the console or a command died half-way) goes on at start."""
        if self.readonly:
            return
        try:
            resumed = await self.backend.resume(lambda progress: None)
        except HivemindError as exc:
            self.notify(f"could not resume uploads: {exc.message}", severity="warning")
            return
        if resumed:
            self.notify(f"resumed {len(resumed)} unfinished submit(s)")

    @work(group="uploads", exit_on_error=False, description="submit upload")
    async def submit_upload(self, path: Path, options: SubmitOptions) -> None:
        """An app-level worker: the upload goes on when the upload screen is left."""
        self.notify(f"uploading {path.name}…")

        def progress(p: Progress) -> None:
            self.upload_progress = p

        try:
            task_id = await self.backend.submit(path, options, progress)
        except (HivemindError, OSError) as exc:
            self.notify(f"upload of {path.name} failed: {getattr(exc, 'message', exc)}", severity="error", timeout=10)
            return
        finally:
            self.upload_progress = None
        self.notify(f"submitted {task_id}", title="Upload done")
        self.action_refresh()

    @work(group="downloads", exit_on_error=False, description="download result")
    async def download_result(self, task_id: str, path: Path) -> None:
        """An app-level worker, like uploads: leaving the task's screen does not cancel the download."""
        self.notify(f"downloading the result of {task_id}…")

        def progress(p: Progress) -> None:
            self.download_progress = p

        snap = self.snapshot
        try:
            size = await self.backend.download(task_id, snap.tasks if snap else [], path, progress)
        except (HivemindError, OSError) as exc:
            self.notify(f"download failed: {getattr(exc, 'message', exc)}", severity="error", timeout=10)
            return
        finally:
            self.download_progress = None
        self.notify(f"saved {size} bytes to {path}", title="Download done")

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.notify("refresh paused (p resumes)" if self.paused else "refresh resumed")
        if not self.paused:
            self.action_refresh()

    def set_interval_seconds(self, seconds: float) -> None:
        self.refresh_interval = seconds
        if self._timer is not None:
            self._timer.stop()
            self._timer = self.set_interval(seconds, self.scheduled_refresh)
        self.notify(f"refresh every {seconds:g} s")

    # -- navigation -------------------------------------------------------------------------------
    def action_copy_or_quit(self) -> None:
        """ctrl+c copies selected text, as in a terminal; with nothing selected it quits, as ctrl+q does."""
        selected = self.screen.get_selected_text()
        if selected:
            self.copy_to_clipboard(selected)
            self.notify(f"copied {len(selected)} characters")
        else:
            self.exit()

    def action_jump(self) -> None:
        if not self.backend.has_session():
            return
        from hivemind_tui.ui.screens.jump import JumpScreen

        self.push_screen(JumpScreen(), self._jump_to)

    async def _jump_to(self, target: str | None) -> None:
        if not target:
            return
        from hivemind_tui.ui.screens.jump import resolve

        snap = self.snapshot
        tasks = {t.task_id for t in snap.tasks} if snap else set()
        nodes = {n.node_id for n in snap.nodes.nodes} if snap and snap.nodes else set()
        found = resolve(target, tasks, nodes)
        if found is None:
            self.notify(f"no section, task or node {target!r}", severity="warning")
        elif found[0] == "section":
            await self.action_section(found[1])
        elif found[0] == "task":
            from hivemind_tui.ui.screens.task_detail import TaskDetailScreen

            self.push_screen(TaskDetailScreen(found[1]))
        else:
            from hivemind_tui.ui.screens.node_detail import NodeDetailScreen

            self.push_screen(NodeDetailScreen(found[1]))

    async def action_section(self, name: str) -> None:
        if self.backend.has_session() and self.current_mode != name:
            await self.switch_mode(name)

    def action_upload(self) -> None:
        if not self.backend.has_session():
            return
        if self.readonly:
            self.notify("read-only: uploading is disabled", severity="warning")
            return
        from hivemind_tui.ui.screens.upload import UploadScreen

        self.push_screen(UploadScreen())

    def action_help(self) -> None:
        from hivemind_tui.ui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    async def action_logout(self) -> None:
        await self.backend.logout()
        self.snapshot = None
        self.push_screen(LoginScreen(first=False), lambda ok: self.action_refresh() if ok else None)

    def copy(self, text: str, what: str) -> None:
        """OSC 52: works over SSH, and in tmux with `set-clipboard on`."""
        self.copy_to_clipboard(text)
        self.notify(f"copied {what} ({len(text)} characters) to the clipboard")

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "Dashboard", "Cluster health, alerts and this host (d)", lambda: self.run_action("section('dashboard')")
        )
        yield SystemCommand(
            "Tasks", "Tasks and split tasks with progress (t)", lambda: self.run_action("section('tasks')")
        )
        yield SystemCommand("Nodes", "The node monitor (n)", lambda: self.run_action("section('nodes')"))
        yield SystemCommand("VPN", "WireGuard peers and the server (v)", lambda: self.run_action("section('vpn')"))
        yield SystemCommand("Upload", "Submit a task zip (u)", self.action_upload)
        yield SystemCommand("Refresh", "Refresh now (r)", self.action_refresh)
        yield SystemCommand(
            "Pause" if not self.paused else "Resume", "Pause or resume the refresh (p)", self.action_pause
        )
        for seconds in INTERVALS:
            yield SystemCommand(
                f"Refresh every {seconds:g} s",
                "Set the refresh interval",
                lambda s=seconds: self.set_interval_seconds(s),
            )
        yield SystemCommand("Logout", "Revoke the session and log in again", self.action_logout)
        yield from super().get_system_commands(screen)
