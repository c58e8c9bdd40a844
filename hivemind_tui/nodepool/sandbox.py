"""How a task is confined: its own uid, the kernel's limits, and (where bubblewrap runs) its own namespaces.

Which protections apply depends on the worker:

- **root with bwrap**: a uid and gid of their own per running task (from `task_uids`, like systemd's
  DynamicUser), pid, ipc and uts namespaces (the task sees only its own processes), the system read-only,
  only its folder and a private /tmp writable; `task_network = false` leaves it only loopback.
- **root without bwrap**: the task's own uid and gid: other tasks' processes, environments and files are
  out of its reach (the kernel refuses a different uid), the data dir too (0700); it sees other processes'
  names and can write where everyone can (/tmp, /dev/shm); network as the host.
- **not root**: the worker's own user; with bwrap (unprivileged user namespaces) the namespaces above, else
  only the limits.

Everything is applied by small C programs that exec each other (prlimit, bwrap, setpriv), so a task costs
one interpreter start, its own; where util-linux is missing, the Python exec wrapper does the uid and limits.
No core dumps: the worker sets its own core limit to 0 when it detects its sandbox, and every task inherits
it, so prlimit runs only for a task with a memory limit (each small program in the chain costs ~1 ms).
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hivemind_tui.core.errors import ConfigError

TASK_DIR = "/tmp/task"  # noqa: S108 - inside the sandbox's own tmpfs
"""Where a task's folder is inside the bwrap sandbox (the root there is read-only; /tmp is its own tmpfs)."""


def parse_uid_range(text: str) -> range:
    low, sep, high = text.partition("-")
    try:
        first, last = int(low), int(high if sep else low)
    except ValueError:
        raise ConfigError(f"task_uids {text!r}: expected FIRST-LAST, e.g. 61000-61999") from None
    if not 1000 <= first <= last < 2**31:
        raise ConfigError(f"task_uids {text!r}: expected unprivileged uids, 1000 or more, FIRST <= LAST")
    return range(first, last + 1)


@dataclass
class UidPool:
    """Uids (gid = uid) lent to running tasks, one each, given back when the task ends."""

    uids: range
    lent: set[int] = field(default_factory=set)

    def take(self) -> int:
        for uid in self.uids:
            if uid not in self.lent:
                self.lent.add(uid)
                return uid
        raise OSError(f"all {len(self.uids)} task uids are in use (task_uids)")

    def give_back(self, uid: int) -> None:
        self.lent.discard(uid)


def _bwrap_works(bwrap: str, tries: int = 3) -> bool:
    """Whether bwrap can make a sandbox here. Tried more than once: a mount of the host that goes away while
    bwrap copies them all fails one start (see `started_task`), and that must not leave the worker without
    namespaces for its whole life."""
    probe = [bwrap, "--unshare-pid", "--unshare-ipc", "--ro-bind", "/", "/", "--proc", "/proc", "--", "/bin/true"]
    for _ in range(tries):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            if subprocess.run(probe, capture_output=True, timeout=20).returncode == 0:
                return True
    return False


@dataclass(frozen=True)
class Sandbox:
    uids: UidPool | None
    bwrap: str | None
    setpriv: str | None
    prlimit: str | None
    network: bool

    @classmethod
    def detect(cls, uid_range: str, network: bool, use_bwrap: bool = True) -> Sandbox:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # inherited by every task: see the module's docstring
        root = os.geteuid() == 0
        bwrap = shutil.which("bwrap") if use_bwrap else None
        return cls(
            UidPool(parse_uid_range(uid_range)) if root else None,
            bwrap if bwrap and _bwrap_works(bwrap) else None,
            shutil.which("setpriv"),
            shutil.which("prlimit"),
            network,
        )

    def describe(self) -> str:
        """One line for `nodes show`: what confines a task on this worker."""
        who = f"uid per task {self.uids.uids.start}-{self.uids.uids.stop - 1}" if self.uids else "worker's own user"
        if self.bwrap:
            spaces = "bwrap: pid, ipc, mount" + ("" if self.network else ", net (loopback only)")
        else:
            spaces = "no bwrap" + ("" if self.network else " (task_network off needs bwrap: network shared)")
        return f"{who}; {spaces}"

    def command(
        self, workdir: Path, uid: int | None, as_bytes: int, argv: list[str], status_fd: int | None = None
    ) -> list[str]:
        """The task's command line, confined. With bwrap, `status_fd` gets bwrap's JSON status lines: an
        "exit-code" line only once the task itself ran (see `started_task`)."""
        if self.prlimit is None or self.setpriv is None:
            return _python_wrapper(uid, as_bytes, argv)
        limits = [self.prlimit, f"--as={as_bytes}", "--"] if as_bytes else []
        ids = ["--reuid", str(uid), "--regid", str(uid), "--clear-groups"] if uid is not None else []
        if self.bwrap is None:
            # setpriv also ties the task to the worker: it dies when the worker does.
            return [*limits, self.setpriv, *ids, "--pdeathsig", "KILL", "--", *argv]
        drop = [self.setpriv, *ids, "--"] if ids else []
        where = str(workdir)
        jail = [
            self.bwrap,
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            *([] if self.network else ["--unshare-net"]),
            "--die-with-parent",
            *([] if status_fd is None else ["--json-status-fd", str(status_fd)]),
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--perms",
            "01777",
            "--tmpfs",
            "/tmp",  # noqa: S108 - a private tmpfs inside the sandbox
            # Its folder at a fixed place: the host's path to it (and the folders above) stays out of sight.
            "--bind",
            where,
            TASK_DIR,
            "--chdir",
            TASK_DIR,
            "--setenv",
            "HOME",
            TASK_DIR,
            "--setenv",
            "TMPDIR",
            "/tmp",  # noqa: S108 - the sandbox's own tmpfs
            "--",
        ]
        return [*limits, *jail, *drop, *argv]


def started_task(status: bytes) -> bool:
    """Whether bwrap's status lines say the task ran. Without an "exit-code" line bwrap died setting up the
    sandbox, before the task started: the mount race of containers/bubblewrap#650 (a mount of the host went
    away while bwrap copied them all) is the one seen, and it passes on a second start."""
    return b'"exit-code"' in status


def _python_wrapper(uid: int | None, as_bytes: int, argv: list[str]) -> list[str]:
    # -I: the task's folder must never shadow our own modules while we are still root.
    cmd = [sys.executable, "-I", "-m", "hivemind_tui.nodepool.exec_wrapper"]
    if as_bytes:
        cmd += ["--as-bytes", str(as_bytes)]
    if uid is not None:
        cmd += ["--uid", str(uid)]
    return [*cmd, "--", *argv]
