"""A worker waits for its tasks' processes on its loop, not with a thread started and ended per task."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Iterator

import pytest

from hivemind_tui.nodepool.task_runner import watch_tasks_without_threads


@pytest.fixture
def own_child_watcher() -> Iterator[None]:
    """The watcher is process-wide: the one this test sets must not outlive the test's loop."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # child watchers are deprecated from 3.12 on
        policy = asyncio.get_event_loop_policy()
        yield
        policy.set_child_watcher(None)


async def test_a_task_process_is_awaited_without_a_thread_of_its_own(own_child_watcher: None) -> None:
    watch_tasks_without_threads()
    before = threading.active_count()
    proc = await asyncio.create_subprocess_exec("cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL)
    assert threading.active_count() == before  # Python 3.11's default watcher started a "waitpid" thread
    assert proc.stdin is not None
    proc.stdin.close()
    assert await asyncio.wait_for(proc.wait(), 30) == 0
