"""Failure reasons in `message` (protos/nodepool.proto): a short stable code first, then words after a colon."""

from __future__ import annotations

INVALID_TOKEN = "INVALID_TOKEN"
TOKEN_EXPIRED = "TOKEN_EXPIRED"
INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
ACCOUNT_DISABLED = "ACCOUNT_DISABLED"
TASK_EXISTS = "TASK_EXISTS"
TASK_NOT_FOUND = "TASK_NOT_FOUND"
INVALID_TASK = "INVALID_TASK"
PERMISSION_DENIED = "PERMISSION_DENIED"
TOO_LARGE = "TOO_LARGE"
INVALID_ARGUMENT = "INVALID_ARGUMENT"
NODE_NOT_FOUND = "NODE_NOT_FOUND"
USER_NOT_FOUND = "USER_NOT_FOUND"
INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
NO_RESULT = "NO_RESULT"
STALE_ATTEMPT = "STALE_ATTEMPT"
NODE_IN_USE = "NODE_IN_USE"


class PoolRefusal(Exception):
    """A request the pool answers with success=false and `code: words`."""

    def __init__(self, code: str, words: str = "") -> None:
        super().__init__(f"{code}: {words}" if words else code)
        self.code = code

    @property
    def message(self) -> str:
        return str(self)
