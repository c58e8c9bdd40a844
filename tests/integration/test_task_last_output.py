"""A finished task's output that the pool does not take in time goes with its result, so that a pool that is
away holds up neither the result nor the worker's slot. Real TaskRun, real task process (no bwrap needed);
the pool is an output sink that never answers."""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from pathlib import Path

import pytest

from hivemind_tui.core.zipsafe import ZipLimits
from hivemind_tui.nodepool.sandbox import Sandbox
from hivemind_tui.nodepool.task_runner import LAST_OUTPUT_GRACE, RunSettings, TaskRun
from tests.helpers import make_zip

pytestmark = pytest.mark.timeout(60)


async def test_output_the_pool_does_not_take_goes_with_the_result_in_order(tmp_path: Path) -> None:
    sandbox = Sandbox(None, None, shutil.which("setpriv"), shutil.which("prlimit"), True)
    settings = RunSettings(30.0, ZipLimits(10**7, 100), 10**7, sandbox, sys.executable, tmp_path)
    tried: list[str] = []
    ended: list[tuple[int, str, str, float]] = []
    never = asyncio.Event()

    async def send_output(task_id: str, text: str) -> None:
        tried.append(text)
        await never.wait()  # a pool that is away: the upload is retried for minutes

    async def send_result(task_id: str, result: bytes, code: int, reason: str, unsent: str) -> None:
        ended.append((code, reason, unsent, time.monotonic()))

    main = "import time\nprint('first', flush=True)\ntime.sleep(0.6)\nprint('last words', flush=True)\n"
    run = TaskRun("t-last", make_zip({"main.py": main}), 0, settings, send_output, send_result)
    await run.start()
    started = time.monotonic()
    await asyncio.wait_for(run.run(), 30)
    (code, reason, unsent, at) = ended[0]
    assert (code, reason) == (0, "")
    assert tried == ["first\n"]  # the upload in flight when the task ended, given up after the grace
    assert unsent == "first\nlast words\n"  # what the pool never took, in order, the first chunk included
    assert at - started < 0.6 + LAST_OUTPUT_GRACE + 5  # not after the minutes of retries
    assert run.ended and not await asyncio.to_thread(lambda: list(tmp_path.iterdir()))  # its folder is gone
