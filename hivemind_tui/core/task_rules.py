"""What a Node Pool accepts in a task upload: one set of rules that our pool enforces on every request (a
raw gRPC client bypasses the console and the command line) and that the client checks before it records a
submit, so that nothing is recorded that the pool will refuse."""

from __future__ import annotations

import re

PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
MAX_TASK_TYPE = 64
MAX_TEXT = 256  # location, gpu_name
# Ids name files in the pool's folders: a first character that is a letter or digit keeps them off '.' and
# '..', hidden names, and names that look like options.
TASK_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def task_id_problem(task_id: str) -> str | None:
    """Why `task_id` cannot name a task on the pool, or None when it can."""
    if task_id and not (task_id[0].isascii() and task_id[0].isalnum()):
        return "task id must start with a letter or digit"
    if not TASK_ID_PATTERN.match(task_id):
        return "task id must be 1 to 128 ASCII letters, digits, '.', '-' or '_'"
    if ".." in task_id:
        return "task id must not contain '..'"
    return None


def upload_problem(priority: int, task_type: str, location: str, gpu_name: str) -> str | None:
    """Why these request values are out of range, or None; the message starts with the field's name."""
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        return f"priority must be from {PRIORITY_MIN} to {PRIORITY_MAX}"
    if len(task_type) > MAX_TASK_TYPE:
        return f"task_type must be at most {MAX_TASK_TYPE} characters"
    if len(location) > MAX_TEXT:
        return f"location must be at most {MAX_TEXT} characters"
    if len(gpu_name) > MAX_TEXT:
        return f"gpu_name must be at most {MAX_TEXT} characters"
    return None
