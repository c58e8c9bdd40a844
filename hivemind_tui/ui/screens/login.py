"""Login: pool address, user, password, remember me. Each failure gets its own words; the form stays.

The form is keyboard-first, like the rest of the console: enter moves on and logs in from the password,
ctrl+r toggles "remember me". The toggle and the log-in line are plain Statics that also take a click, not a
Checkbox and a Button: their styles cost the first frame about a tenth of its time (tests/perf/bench_console.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static
from textual.worker import Worker

from hivemind_tui.core.errors import HivemindError
from hivemind_tui.services.errors import AuthenticationFailedError, NotConnectedError
from hivemind_tui.ui.format import plain
from hivemind_tui.ui.hive import hive_of
from hivemind_tui.ui.worker_errors import ReportsWorkerErrors

LOGIN_TIMEOUT = 20.0


class LoginScreen(ReportsWorkerErrors, ModalScreen[bool]):
    """At start without a remembered session (as the app's first screen), and over any screen when the session
    ran out (as a modal)."""

    BINDINGS = [
        Binding("escape", "cancel", "Quit or close"),
        Binding("ctrl+r", "toggle_remember", "Remember me", priority=True),
    ]

    def __init__(self, first: bool) -> None:
        super().__init__()
        self._first = first
        self.remember = True
        self._busy = False

    def compose(self) -> ComposeResult:
        backend = hive_of(self).backend
        with Vertical(id="login-box"):
            yield Static("[b]HiveMind[/b] · Master Node", id="login-title")
            if not self._first:
                yield Static("The session ended. Log in again; everything continues where it was.", id="login-why")
            yield Label("Node Pool")
            yield Input(backend.address, id="address", placeholder="host:port")
            yield Label("User")
            # An embedded pool's first user is admin; a typed password must never land in a visible field.
            yield Input(backend.username or ("admin" if backend.embedded else ""), id="user", placeholder="user")
            yield Label("Password")
            yield Input(id="password", password=True, placeholder="password")
            yield Static(self._remember_text(), id="remember")
            yield Static("Log in  ⏎", id="login")
            yield Static("", id="login-error")
            if backend.embedded and backend.admin_password_file is not None:
                yield Static(
                    "Embedded pool: the first-run password of [b]admin[/b] is in\n"
                    + plain(backend.admin_password_file),
                    id="login-hint",
                )

    def on_mount(self) -> None:
        if getattr(self.app, "deterministic", False):
            for field in self.query(Input):
                field.cursor_blink = False
        self.query_one("#user" if not self.query_one("#user", Input).value else "#password", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "password":
            self.attempt()
        else:
            self.focus_next()

    def on_click(self, event: events.Click) -> None:
        if event.widget is not None and event.widget.id == "login":
            self.attempt()
        elif event.widget is not None and event.widget.id == "remember":
            self.action_toggle_remember()

    def _remember_text(self) -> str:
        box = r"\[x]" if self.remember else r"\[ ]"
        return f"[b]{box}[/b] Remember me on this host · ctrl+r"

    def action_toggle_remember(self) -> None:
        self.remember = not self.remember
        self.query_one("#remember", Static).update(self._remember_text())

    def attempt(self) -> None:
        if self._busy:
            return
        address = self.query_one("#address", Input).value.strip()
        user = self.query_one("#user", Input).value.strip()
        password = self.query_one("#password", Input).value
        error = self.query_one("#login-error", Static)
        if not address or not user or not password:
            error.update("[b red]Pool address, user and password are all needed.[/]")
            return
        error.update("logging in…")
        self._set_busy(True)
        self.log_in(address, user, password, self.remember)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.query_one("#login", Static).set_class(busy, "-busy")

    @work(exclusive=True, group="login", exit_on_error=False, description="log in")
    async def log_in(self, address: str, user: str, password: str, remember: bool) -> None:
        error = self.query_one("#login-error", Static)
        try:
            await hive_of(self).ready()
            await asyncio.wait_for(
                hive_of(self).backend.login(address, user, password, remember),
                LOGIN_TIMEOUT,
            )
        except AuthenticationFailedError:
            error.update("[b red]Wrong user name or password.[/]")
        except NotConnectedError as exc:
            if "deadline" in exc.message:
                error.update(
                    f"[b red]The Node Pool at {plain(address)} did not answer in time.[/] It may be overloaded "
                    "or the network drops packets."
                )
            else:
                error.update(
                    f"[b red]Cannot reach the Node Pool at {plain(address)}.[/] Check the address and that it runs."
                )
        except TimeoutError:
            error.update(f"[b red]The Node Pool at {plain(address)} did not answer in time.[/]")
        except HivemindError as exc:
            error.update(f"[b red]{plain(exc.message)}[/]")
        else:
            self._succeeded()
            return
        finally:
            if self.is_attached:
                self._set_busy(False)
        password_field = self.query_one("#password", Input)
        password_field.value = ""
        password_field.focus()

    def worker_failed(self, worker: Worker[Any]) -> None:
        self._set_busy(False)
        self.query_one("#login-error", Static).update("[b red]Logging in failed unexpectedly (details in the log).[/]")

    def _succeeded(self) -> None:
        """The first login is the app's base screen: it stays below the sections, without the password."""
        if self._first:
            self.query_one("#password", Input).value = ""
            hive_of(self).call_later(hive_of(self).enter)
        else:
            self.dismiss(True)

    def action_cancel(self) -> None:
        if self._first:
            self.app.exit()
        else:
            self.dismiss(False)
