"""The one place HiveMind's result zip says how a task ended: `execution_log.txt` at its root.

HiveMind's wire has no exit code. Its worker writes `execution_log.txt` into the result (`Task ID:`,
`Status: Success|Failed|Stopped by user`, `Execution Result: Completed|Error|Terminated`, `Time:`,
`Node:`), and that `Status:` line is the only failure signal. `worker --hivemind` writes the same file; our
pool reads it from the results of HiveMind-style workers.
"""

from __future__ import annotations

import io
import time
import zipfile

EXECUTION_LOG = "execution_log.txt"
# Enough for the few lines HiveMind writes; a larger file is not read further.
READ_AT_MOST = 64 * 1024
SUCCESS = "Success"


def execution_log(task_id: str, exit_code: int, stopped: bool, node: str) -> str:
    if stopped:
        status, outcome = "Stopped by user", "Terminated"
    elif exit_code == 0:
        status, outcome = SUCCESS, "Completed"
    else:
        status, outcome = "Failed", "Error"
    lines = [
        f"Task ID: {task_id}",
        f"Status: {status}",
        f"Execution Result: {outcome}",
        f"Time: {time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"Node: {node}",
    ]
    if stopped:
        lines.append("The task was stopped at the user's request.")
    return "\n".join(lines) + "\n"


def reported_failure(result_zip: bytes) -> str:
    """Why the worker says the task failed ("" when it says Success, or says nothing we can read)."""
    try:
        with zipfile.ZipFile(io.BytesIO(result_zip)) as archive, archive.open(EXECUTION_LOG) as file:
            text = file.read(READ_AT_MOST).decode("utf-8", "replace")
    except (KeyError, zipfile.BadZipFile, OSError, ValueError):
        return ""
    for line in text.splitlines():
        if line.startswith("Status:"):
            status = line.removeprefix("Status:").strip()
            return "" if status == SUCCESS else f"the worker reported Status: {status[:100]}"
    return ""


def with_execution_log(result_zip: bytes, text: str) -> bytes:
    """The result zip with `execution_log.txt` added at its root (a new zip when there is none)."""
    buffer = io.BytesIO(result_zip)
    buffer.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buffer, "a" if result_zip else "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(EXECUTION_LOG, text)
    return buffer.getvalue()
