"""Following a task's log: new lines only, whatever the pool can do.

Our pool has GetTasklogSince (bytes from an offset, append-only). HiveMind's pool has only GetTasklog, and
its text is not append-only: it puts its system lines (a stop, a timeout) above all output and keeps only the
last 10 KiB of output, so the start moves. There the whole log is fetched each time and compared line by line
with what was already shown: lines that appeared anywhere are new, lines that vanished are not shown again.
"""

from __future__ import annotations

import difflib
from functools import partial
from typing import Protocol

from hivemind_tui.core.errors import NotSupportedError
from hivemind_tui.services.session import Session


def fresh_lines(shown: list[str], whole: list[str]) -> list[str]:
    """The lines of `whole` that `shown` does not account for, in order (an inserted system line too)."""
    matcher = difflib.SequenceMatcher(None, shown, whole, autojunk=False)
    fresh: list[str] = []
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        if tag in ("insert", "replace"):
            fresh += whole[j1:j2]
    return fresh


class LogSource(Protocol):
    async def poll(self) -> list[str]: ...


class LogFollower:
    """One task's log for one reader. `poll()` returns the complete lines that are new since the last poll."""

    def __init__(self, session: Session, task_id: str) -> None:
        self.session = session
        self.task_id = task_id
        self._offset = 0
        self._partial = ""
        self._by_offset = True
        self._shown: list[str] = []

    @property
    def by_offset(self) -> bool:
        """False once the pool turned out to have no GetTasklogSince (whole-log comparison from then on)."""
        return self._by_offset

    async def poll(self) -> list[str]:
        client = self.session.client
        if self._by_offset:
            try:
                text, self._offset = await self.session.call(
                    partial(client.task_log_since, task_id=self.task_id, offset=self._offset)
                )
            except NotSupportedError:
                self._by_offset = False
            else:
                *complete, self._partial = (self._partial + text).split("\n")
                return complete
        whole = await self.session.call(partial(client.task_log, task_id=self.task_id))
        lines = whole.split("\n")
        if lines and lines[-1] == "":  # our pool ends lines with "\n", HiveMind's last line has none
            lines.pop()
        fresh = fresh_lines(self._shown, lines)
        self._shown = lines
        return fresh

    def rest(self) -> list[str]:
        """A last line without its newline, once the task has finished."""
        rest, self._partial = self._partial, ""
        return [rest] if rest else []
