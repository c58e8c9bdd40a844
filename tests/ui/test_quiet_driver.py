"""The console's terminal driver, in a real pseudo-terminal: keys and a lone escape arrive, quitting is prompt,
and an idle app's input thread does not wake (Textual's own woke ten times a second: 0.17% of a core)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = """
import sys
sys.path.insert(0, {root!r})
from textual.app import App
from textual.widgets import Static
from textual.drivers.linux_driver import LinuxDriver
from hivemind_tui.ui.quiet_driver import QuietLinuxDriver

class Keys(App):
    def compose(self):
        yield Static("ready")

    def on_mount(self):
        print("\\x1b]0;mounted\\x07", end="", file=sys.__stderr__, flush=True)

    def on_key(self, event):
        with open({keys!r}, "a") as fh:
            fh.write(event.key + "\\n")
        if event.key == "q":
            self.exit()

Keys(driver_class={driver}).run()
"""


class Terminal:
    def __init__(self, tmp_path: Path, driver: str) -> None:
        self.keys = tmp_path / f"keys-{driver}"
        self.keys.write_text("")
        master, slave = pty.openpty()
        source = APP.format(root=str(ROOT), keys=str(self.keys), driver=driver)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", source],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "TERM": "xterm-256color"},
            close_fds=True,
        )
        os.close(slave)
        self.master = master
        self.seen = b""

    def read_until(self, marker: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            assert time.monotonic() < deadline and self.proc.poll() is None, self.seen[-400:]
            if select.select([self.master], [], [], 0.1)[0]:
                self.seen += os.read(self.master, 65536)

    def drain(self) -> None:
        while select.select([self.master], [], [], 0.2)[0]:
            self.seen += os.read(self.master, 65536)

    def wakeups(self) -> int:
        """Voluntary context switches of all the app's threads so far."""
        total = 0
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            status = (task / "status").read_text()
            total += int(status.split("voluntary_ctxt_switches:")[1].split()[0])
        return total

    def pressed(self, count: int, timeout: float = 10) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(keys := self.keys.read_text().split()) < count:
            assert time.monotonic() < deadline, keys
            self.drain()
        return keys

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self.master)


@pytest.fixture
def terminals(tmp_path: Path):
    made: list[Terminal] = []

    def start(driver: str) -> Terminal:
        made.append(Terminal(tmp_path, driver))
        made[-1].read_until(b"mounted")
        made[-1].drain()
        return made[-1]

    yield start
    for terminal in made:
        terminal.close()


def idle_wakeups(terminal: Terminal, seconds: float = 2.0) -> int:
    before = terminal.wakeups()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        select.select([terminal.master], [], [], deadline - time.monotonic())
        if terminal.proc.poll() is not None:
            break
    return terminal.wakeups() - before


def test_keys_and_a_lone_escape_arrive_and_q_quits_at_once(terminals) -> None:
    terminal = terminals("QuietLinuxDriver")
    os.write(terminal.master, b"a")
    assert terminal.pressed(1) == ["a"]
    os.write(terminal.master, b"\x1b")  # alone: Textual hands it over once no sequence follows
    assert terminal.pressed(2) == ["a", "escape"]
    os.write(terminal.master, b"\x1b[A")  # a sequence: one key, not an escape and letters
    assert terminal.pressed(3) == ["a", "escape", "up"]
    start = time.monotonic()
    os.write(terminal.master, b"q")
    terminal.proc.wait(timeout=10)
    assert time.monotonic() - start < 2.0
    assert terminal.proc.returncode == 0


def test_an_idle_apps_input_thread_does_not_wake(terminals) -> None:
    quiet = idle_wakeups(terminals("QuietLinuxDriver"))
    textuals = idle_wakeups(terminals("LinuxDriver"))  # the measurement itself: Textual's wakes 10 times a second
    assert textuals >= 10, textuals
    assert quiet <= 4, (quiet, textuals)
