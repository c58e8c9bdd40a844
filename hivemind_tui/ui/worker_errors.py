"""Unexpected errors in workers, handled once for the whole console.

Workers run with `exit_on_error=False`, so an error that a worker's own code did not turn into a message
(a console.db of a newer version, a bug) would otherwise vanish and leave its screen busy forever. Every
screen that runs workers, and the app, mix this in: such an error is logged with its traceback (to the log
file, never the terminal), shown as an error toast, and the screen's `worker_failed` lets it leave its busy
state.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from textual.message_pump import MessagePump
from textual.worker import Worker, WorkerState

from hivemind_tui.ui.hive import hive_of

log = logging.getLogger(__name__)


class ReportsWorkerErrors:
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is not WorkerState.ERROR:
            return
        worker: Worker[Any] = event.worker
        error = worker.error
        log.error("worker %s failed", worker.name or worker.group, exc_info=error)
        words = f"{type(error).__name__}: {error}"[:300]
        hive_of(cast(MessagePump, self)).notify(
            f"unexpected error in {worker.name or worker.group}: {words} (details in the log)",
            severity="error",
            timeout=12,
        )
        self.worker_failed(worker)

    def worker_failed(self, worker: Worker[Any]) -> None:
        """Leave a busy state after `worker` failed unexpectedly (the toast is already shown)."""
