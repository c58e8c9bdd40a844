"""How the client says a call failed: one class per meaning (the exit codes in the README ride on them)."""

from __future__ import annotations

from hivemind_tui.core.errors import (
    HivemindError,
    NotAuthenticatedError,
    NotPermittedError,
    NotSupportedError,
    UnreachableError,
)


class NotConnectedError(UnreachableError):
    """The pool did not answer; `retry_in` says when the client tries again (None: it does not)."""

    def __init__(self, address: str, detail: str, retry_in: float | None = None) -> None:
        words = f"the Node Pool at {address} cannot be reached ({detail})"
        if retry_in is not None:
            words += f"; next try in {retry_in:.0f} s"
        super().__init__(words)
        self.address = address
        self.retry_in = retry_in


class AuthenticationFailedError(NotAuthenticatedError):
    code = "INVALID_CREDENTIALS"


class TokenExpiredError(NotAuthenticatedError):
    """The token is expired or unknown; one refresh may mend it."""

    code = "TOKEN_EXPIRED"


class SessionExpiredError(NotAuthenticatedError):
    """No valid token is left: log in again."""

    code = "SESSION_EXPIRED"


class RejectedError(HivemindError):
    """The pool refused the request; `code` is its reason code (TASK_EXISTS, INVALID_TASK, ...)."""


def error_for(message: str) -> HivemindError:
    """Turn a pool's `CODE: words` failure message into the error of that meaning."""
    code = message.split(":", 1)[0].strip() or "REJECTED"
    if code in ("INVALID_TOKEN", "TOKEN_EXPIRED"):
        return TokenExpiredError(message, code=code)
    if code in ("INVALID_CREDENTIALS", "ACCOUNT_DISABLED"):
        return AuthenticationFailedError(message, code=code)
    if code == "PERMISSION_DENIED":
        return NotPermittedError(message)
    return RejectedError(message or "the pool refused the request", code=code)


__all__ = [
    "AuthenticationFailedError",
    "NotConnectedError",
    "NotPermittedError",
    "NotSupportedError",
    "RejectedError",
    "SessionExpiredError",
    "TokenExpiredError",
    "error_for",
]
