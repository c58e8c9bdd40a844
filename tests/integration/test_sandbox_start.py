"""A sandbox that fails to start is not the task failing: the worker starts it again, once.

bubblewrap copies the host's whole mount table; when a mount goes away while it does (a network namespace
deleted, a container stopped), it exits before the task ever ran (containers/bubblewrap#650). Real TaskRun,
real bwrap, real task processes. The first start is made to fail for real: a wrapper gives the real bwrap a
bind mount whose source does not exist, once.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from hivemind_tui.core.zipsafe import ZipLimits
from hivemind_tui.nodepool.sandbox import Sandbox
from hivemind_tui.nodepool.task_runner import RunSettings, TaskRun, choose_task_python
from tests.helpers import make_zip
from tests.system import require_tools

pytestmark = pytest.mark.timeout(60)


def failing_once_bwrap(tmp_path: Path) -> str:
    """A bwrap whose first start fails in its setup, as the mount race makes it fail."""
    real = shutil.which("bwrap")
    mark = tmp_path / "failed-once"
    wrapper = tmp_path / "bwrap"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ ! -e "{mark}" ]; then : > "{mark}"; exec {real} --bind {tmp_path}/no-such-source /x "$@"; fi\n'
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper)


async def run_task(tmp_path: Path, bwrap: str, main: str) -> tuple[str, int, str, bytes]:
    sandbox = Sandbox(None, bwrap, shutil.which("setpriv"), shutil.which("prlimit"), True)
    # As the worker picks it (a venv under /tmp is out of the sandbox's sight), with the plain bwrap.
    real = Sandbox(None, shutil.which("bwrap"), shutil.which("setpriv"), shutil.which("prlimit"), True)
    python = choose_task_python(real, ["/usr/bin/python3", "/usr/local/bin/python3", sys.executable])
    base = tmp_path / "tasks"
    base.mkdir()
    settings = RunSettings(30.0, ZipLimits(10**7, 100), 10**7, sandbox, python, base)
    output: list[str] = []
    results: list[tuple[bytes, int, str]] = []

    async def send_output(task_id: str, text: str) -> None:
        output.append(text)

    async def send_result(task_id: str, result: bytes, code: int, reason: str, unsent: str) -> None:
        output.append(unsent)
        results.append((result, code, reason))

    run = TaskRun("t-1", make_zip({"main.py": main}), 0, settings, send_output, send_result)
    await run.start()
    await run.run()
    (result, code, reason) = results[0]
    return "".join(output), code, reason, result


async def test_a_sandbox_that_failed_to_start_is_started_again_and_the_task_runs_once(tmp_path: Path) -> None:
    require_tools("bwrap")
    main = "open('/tmp/task/ran', 'a').write('x')\nprint('runs', len(open('/tmp/task/ran').read()))\n"
    output, code, reason, _ = await run_task(tmp_path, failing_once_bwrap(tmp_path), main)
    assert (code, reason) == (0, "")
    assert "the sandbox did not start" in output
    assert output.rstrip().endswith("runs 1")


async def test_a_task_that_fails_by_itself_is_not_run_again(tmp_path: Path) -> None:
    require_tools("bwrap")
    main = "import sys\nprint('bwrap: pretending', file=sys.stderr)\nprint('ran', flush=True)\nsys.exit(1)\n"
    output, code, reason, _ = await run_task(tmp_path, str(shutil.which("bwrap")), main)
    assert code == 1
    assert reason.startswith("exit code 1")
    assert output.count("ran") == 1
    assert "the sandbox did not start" not in output


def test_a_worker_that_meets_the_mount_race_when_it_probes_bwrap_still_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_tools("bwrap")
    bwrap = failing_once_bwrap(tmp_path)  # first on the PATH: the one the worker finds
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert Sandbox.detect("61000-61999", network=True).bwrap == bwrap


def test_the_mount_race_when_the_worker_picks_the_tasks_python_does_not_pass_it_over(tmp_path: Path) -> None:
    require_tools("bwrap")
    sandbox = Sandbox(None, failing_once_bwrap(tmp_path), shutil.which("setpriv"), shutil.which("prlimit"), True)
    assert choose_task_python(sandbox, ["/usr/bin/python3", sys.executable]) == "/usr/bin/python3"
