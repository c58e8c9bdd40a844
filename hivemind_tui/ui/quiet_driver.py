"""The console's terminal driver on Linux: Textual's, with an input thread that sleeps until input comes.

Textual's input thread wakes ten times a second to look for an escape key's timeout, also when no key is
pending: 0.17% of a core of an idle console, a third of its budget (`tests/perf/bench_console.py`). This one
waits without a timeout unless the parser holds a lone escape (then it looks as often as Textual's does);
a byte on a pipe of its own wakes it to stop.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
from codecs import getincrementaldecoder
from typing import Any

from textual._parser import ParseError
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

ESCAPE_POLL = 0.1  # seconds, as Textual's own driver polls, while a lone escape may still become a sequence


class _WakingEvent(threading.Event):
    """The driver's exit event: setting it also wakes the input thread from its wait."""

    def __init__(self, wake: int) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        with contextlib.suppress(OSError):  # a full pipe is awake already
            os.write(self._wake, b"\0")


class QuietLinuxDriver(LinuxDriver):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self.exit_event = _WakingEvent(self._wake_write)

    def close(self) -> None:
        super().close()
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_read, 512):
                pass

    def run_input_thread(self) -> None:
        """Textual's loop (decode, parse, hand over), with the wait above."""
        self._drain_wake()  # a wake-up left from an earlier stop (suspend and resume start a new thread)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        with selectors.DefaultSelector() as selector:
            selector.register(self.fileno, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while not self.exit_event.is_set():
                # Missing in another Textual: taken as pending, so it polls as Textual's own driver does.
                pending = getattr(parser, "_timeout_time", 0.0) is not None
                ready = {key.fd for key, _ in selector.select(ESCAPE_POLL if pending else None)}
                if self._wake_read in ready:
                    self._drain_wake()
                if self.fileno in ready:
                    raw = os.read(self.fileno, 4096)
                    if not raw:  # the end of a piped input: nothing more will come
                        selector.unregister(self.fileno)
                    for event in parser.feed(decode(raw)):
                        self.process_message(event)
                for event in parser.tick():
                    self.process_message(event)
        with contextlib.suppress(EOFError, ParseError):
            for _ in parser.feed(""):
                pass
