"""Running one task zip on a worker: unpack safely, run `main.py` confined, stream output, report the end.

The task runs in a private temp dir, in its own process group and session, with a scrubbed environment
plus HIVEMIND_TASK_ID and HIVEMIND_OUTPUT_DIR=output, confined by the worker's sandbox (its own uid when the
worker is root, the address-space limit, namespaces where bwrap runs, death with the worker; sandbox.py).
Its `output/` folder is zipped
with that prefix and sent back with the exit code and, on failure, the reason and the last stderr lines.
The temp dir is removed in every case.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from hivemind_tui.core.zipsafe import ZipLimits, extract_zip, zip_folder
from hivemind_tui.nodepool.sandbox import Sandbox, started_task

log = logging.getLogger(__name__)

OUTPUT_BATCH_SECONDS = 0.25
OUTPUT_BATCH_BYTES = 64 * 1024
# How long a finished task's last output may take to reach the pool before it is kept with the result
# instead: an upload retried while the pool is away held the result back (and the slot) for minutes, and a
# worker killed meanwhile lost both.
LAST_OUTPUT_GRACE = 2.0
STDERR_TAIL_BYTES = 2000
STDERR_TAIL_LINES = 20
GIB = 1024**3

OutputSink = Callable[[str, str], Awaitable[None]]
# task id, result zip, exit code, failure reason, the output the pool has not taken (it goes first).
ResultSink = Callable[[str, bytes, int, str, str], Awaitable[None]]


@dataclass(frozen=True)
class RunSettings:
    """How every task on this worker runs."""

    time_limit: float
    zip_limits: ZipLimits
    max_result_bytes: int
    sandbox: Sandbox
    python: str
    base_dir: Path


def scrubbed_env(task_id: str, workdir: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir / ".tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HIVEMIND_TASK_ID": task_id,
        "HIVEMIND_OUTPUT_DIR": "output",
    }


def choose_task_python(sandbox: Sandbox, candidates: list[str], tries: int = 3) -> str:
    """The first interpreter a task can run in the sandbox (a root-only venv may be out of its reach). Each
    is tried up to `tries` times: bwrap's mount race (see `started_task`) must not pass over the plain
    interpreter for the worker's own."""
    import subprocess

    uid = sandbox.uids.uids.start if sandbox.uids else None
    with tempfile.TemporaryDirectory() as folder:
        if uid is not None:
            os.chown(folder, uid, uid)
        for python in candidates:
            if not python or not Path(python).exists():
                continue
            probe = sandbox.command(Path(folder), uid, 0, [python, "-c", "import json, csv, math"])
            for _ in range(tries):
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    if subprocess.run(probe, capture_output=True, timeout=30, cwd=folder).returncode == 0:
                        return python
    raise RuntimeError(f"no Python interpreter can run in the task sandbox (tried {candidates})")


class BaseDirBusy(OSError):
    """Another live worker process holds this node's task folder."""


def prepare_base_dir(base: Path) -> int:
    """Lock the parent of all task dirs for this process (the descriptor holds the lock), then remove what a
    killed worker left there. A folder another live process holds is never touched: that is a second worker
    with the same node id on this host. Others may pass through the folder, not list it."""
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o711)
    fd = os.open(base / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise BaseDirBusy(f"another worker process holds {base} (a second worker with this node id?)") from None
    for entry in base.iterdir():
        if entry.name != ".lock":
            shutil.rmtree(entry, ignore_errors=True)
    return fd


def watch_tasks_without_threads() -> None:
    """Wait for task processes on the running loop through pidfds, as Python 3.12 does by default. Python
    3.11's asyncio starts a thread per child process to wait for it: a thread started and ended per task,
    ~6% of a busy worker's CPU. Where pidfds are missing (old kernel, seccomp), the threads stay."""
    if sys.version_info >= (3, 12):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


class TaskRun:
    def __init__(
        self,
        task_id: str,
        task_zip: bytes,
        memory_gb: int,
        settings: RunSettings,
        send_output: OutputSink,
        send_result: ResultSink,
    ) -> None:
        self.task_id = task_id
        self._zip = task_zip
        self._memory_gb = memory_gb
        self._s = settings
        self._send_output = send_output
        self._send_result = send_result
        self._proc: asyncio.subprocess.Process | None = None
        self._workdir: Path | None = None
        self._stopped = False
        self._pending: list[str] = []
        self._pending_bytes = 0
        self._sending = ""  # the output of the upload in flight: unsent still, if that upload is cancelled
        self._stderr_tail = b""
        self._flush_lock = asyncio.Lock()
        self.started_at = time.monotonic()
        # Its processes are gone and only its report is left: it no longer holds a slot. The pool dispatches
        # the next task as soon as it takes the result, before this run has removed its folder.
        self.ended = False
        self._uid: int | None = None
        self._status: int | None = None  # the read end of bwrap's status pipe

    async def start(self) -> None:
        """Unpack and spawn; raises (ZipRejected, OSError) if the task cannot start, leaving nothing behind."""
        try:
            pool = self._s.sandbox.uids
            self._uid = pool.take() if pool is not None else None
            self._workdir = await asyncio.to_thread(self._unpack)
            await self._spawn()
        except BaseException:
            self._cleanup()
            raise
        self._zip = b""

    async def _spawn(self) -> None:
        assert self._workdir is not None
        as_bytes = self._memory_gb * GIB if self._memory_gb > 0 else 0
        status_fd = None
        if self._s.sandbox.bwrap is not None:
            self._status, status_fd = os.pipe()
            os.set_blocking(self._status, False)
        argv = [self._s.python, "main.py"]
        command = self._s.sandbox.command(self._workdir, self._uid, as_bytes, argv, status_fd)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *command,
                cwd=self._workdir,
                env=scrubbed_env(self.task_id, self._workdir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                pass_fds=() if status_fd is None else (status_fd,),
            )
        finally:
            if status_fd is not None:
                os.close(status_fd)

    def _unpack(self) -> Path:
        workdir = Path(tempfile.mkdtemp(prefix=f"{self.task_id[:40]}-", dir=self._s.base_dir))
        extract_zip(self._zip, workdir, self._s.zip_limits)
        (workdir / "output").mkdir(exist_ok=True)
        (workdir / ".tmp").mkdir(exist_ok=True)
        if self._uid is not None:
            for path in (workdir, *workdir.rglob("*")):
                os.chown(path, self._uid, self._uid, follow_symlinks=False)
        return workdir

    async def run(self) -> None:
        """Wait for the task (within the time limit), stream its output, and report how it ended."""
        assert self._proc is not None and self._workdir is not None
        deadline = time.monotonic() + self._s.time_limit
        done = asyncio.Event()
        flusher = asyncio.create_task(self._flush_periodically(done))
        try:
            reason = await self._wait(deadline)
            if not reason and not self._stopped and self._sandbox_did_not_start():
                log.warning("task %s: the sandbox did not start (bwrap); starting it again", self.task_id)
                self._queue("[hivemind worker] the sandbox did not start (bwrap, above); starting the task again\n")
                self._stderr_tail = b""
                await self._spawn()
                reason = await self._wait(deadline)
            done.set()
            await self._last_output(flusher)
            returncode = self._proc.returncode
            code = returncode if returncode is not None and returncode >= 0 else 128 + -(returncode or -9)
            if self._stopped:
                reason = "stopped"
            elif not reason and code != 0:
                reason = self._failure_words(code)
            result = await asyncio.to_thread(zip_folder, self._workdir / "output", "output")
            if len(result) > self._s.max_result_bytes:
                reason = reason or f"the output zip is {len(result)} bytes, over the pool's limit"
                result = b""
            self.ended = True
            await self._send_result(self.task_id, result, code, reason, self._sending + "".join(self._pending))
        finally:
            flusher.cancel()
            self._kill()
            await asyncio.to_thread(self._cleanup)

    async def _last_output(self, flusher: asyncio.Task[None]) -> None:
        """Let the flusher send what is left for LAST_OUTPUT_GRACE; what it has not sent by then goes with the
        result (kept on disk first), so a pool that is away holds up neither."""
        await asyncio.wait({flusher}, timeout=LAST_OUTPUT_GRACE)
        if flusher.done():
            flusher.result()  # its error, if it failed
            return
        flusher.cancel()
        await asyncio.wait({flusher})

    async def _wait(self, deadline: float) -> str:
        """Wait for the process and its output; the reason when the time limit ended it."""
        assert self._proc is not None
        proc = self._proc
        reason = ""
        readers = asyncio.gather(self._read(proc.stdout, False), self._read(proc.stderr, True))
        try:
            try:
                await asyncio.wait_for(proc.wait(), timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                reason = f"time limit of {self._s.time_limit:g} s exceeded"
            self._kill()  # the task on a timeout, and whatever it left running in its group
            await proc.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(readers, 5.0)
        finally:
            readers.cancel()
        return reason

    def _sandbox_did_not_start(self) -> bool:
        """bwrap exited 1 without saying the task ran: it failed setting up (see `started_task`)."""
        if self._status is None or self._proc is None or self._proc.returncode != 1:
            return False
        status = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._status, 65536):
                status += chunk
        os.close(self._status)
        self._status = None
        return not started_task(status)

    def _failure_words(self, code: int) -> str:
        tail = self._stderr_tail.decode("utf-8", errors="replace").splitlines()[-STDERR_TAIL_LINES:]
        memory = self._memory_gb and (any("MemoryError" in line for line in tail) or code in (128 + 9, 128 + 11))
        head = f"memory limit of {self._memory_gb} GB exceeded" if memory else f"exit code {code}"
        return head + ("; last lines of stderr:\n" + "\n".join(tail) if tail else "")

    def stop(self) -> None:
        self._stopped = True
        self._kill()

    def _kill(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    def _cleanup(self) -> None:
        if self._status is not None:
            os.close(self._status)
            self._status = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        if self._uid is not None and self._s.sandbox.uids is not None:
            # Given back only once nothing of the task's can still run under it: its group was killed.
            self._s.sandbox.uids.give_back(self._uid)
            self._uid = None

    async def _read(self, stream: asyncio.StreamReader | None, is_stderr: bool) -> None:
        if stream is None:
            return
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while chunk := await stream.read(65536):
            if is_stderr:
                self._stderr_tail = (self._stderr_tail + chunk)[-STDERR_TAIL_BYTES:]
            self._queue(decoder.decode(chunk))
            if self._pending_bytes >= OUTPUT_BATCH_BYTES:
                await self._flush()

    def _queue(self, text: str) -> None:
        if text:
            self._pending.append(text)
            self._pending_bytes += len(text)

    async def _flush_periodically(self, done: asyncio.Event) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), OUTPUT_BATCH_SECONDS)
            await self._flush()
        await self._flush()  # what was queued while the last send was in flight

    async def _flush(self) -> None:
        """Send what is queued; one send at a time, so output arrives in order."""
        async with self._flush_lock:
            if not self._pending:
                return
            # After a cancelled send (a reader stopped mid-send), its text goes again, first, at the same offset.
            self._sending += "".join(self._pending)
            self._pending, self._pending_bytes = [], 0
            await self._send_output(self.task_id, self._sending)
            self._sending = ""
