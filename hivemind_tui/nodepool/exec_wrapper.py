"""A tiny exec wrapper that applies limits and the task user, then becomes the task.

The worker runs gRPC threads, so it must not use `preexec_fn` (not fork-safe). It spawns this wrapper
instead (a fresh interpreter with no threads), which sets the address-space limit, drops to the task user,
asks the kernel to kill it if the worker dies, and execs the task's command. Used only where util-linux's
prlimit and setpriv are missing (see sandbox.py):

    python -m hivemind_tui.nodepool.exec_wrapper [--as-bytes N] [--uid N] -- COMMAND ...
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    if "--" not in argv:
        sys.exit("usage: exec_wrapper [--as-bytes N] [--uid N] -- COMMAND ...")
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    as_bytes = int(options[options.index("--as-bytes") + 1]) if "--as-bytes" in options else 0
    uid = int(options[options.index("--uid") + 1]) if "--uid" in options else -1
    if as_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if uid >= 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    # Set after the user switch, which clears it; it survives the exec below.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        sys.exit("the worker is gone")
    os.execvpe(command[0], command, os.environ)  # noqa: S606


if __name__ == "__main__":
    main(sys.argv[1:])
