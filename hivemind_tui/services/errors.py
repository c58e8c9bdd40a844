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


# What the real HiveMind pool says instead of our codes (its texts are exact; README: "HiveMind pools").
HIVEMIND_TOKEN_TEXTS = (
    "令牌已過期",  # expired (UserService)
    "無效令牌",  # bad signature, e.g. after a restart that drew a new signing key
    "Token 驗證失敗",  # malformed
    "Token is required",
    "Authentication failed",  # UploadTask, GetTaskResult
    "Invalid or expired token",  # StopTask, GetTasklog
)
HIVEMIND_CODES = {
    "用戶名或密碼錯誤": "INVALID_CREDENTIALS",
    "用戶名和密碼不能為空": "INVALID_CREDENTIALS",
    "無權限停止此任務": "PERMISSION_DENIED",
    "無權限訪問此任務": "PERMISSION_DENIED",
    "任務不存在": "TASK_NOT_FOUND",
    "任務 ID 已存在": "TASK_EXISTS",
    "任務結果不存在或未完成": "NO_RESULT",
}


def hivemind_code(message: str) -> str | None:
    """Our code for one of the HiveMind pool's failure texts, None for any other text."""
    if message.startswith(HIVEMIND_TOKEN_TEXTS):
        return "INVALID_TOKEN"
    return HIVEMIND_CODES.get(message.strip())


def error_for_status(name: str, status: str, details: str) -> HivemindError:
    """A failure sent as a gRPC status code (HiveMind's GetTasklog is the rpc that does)."""
    message = f"{name} failed: {status} {details}".strip()
    if status == "UNAUTHENTICATED":
        return TokenExpiredError(message, code="INVALID_TOKEN")
    if status == "PERMISSION_DENIED":
        return NotPermittedError(message)
    return RejectedError(message, code="TASK_NOT_FOUND" if status == "NOT_FOUND" else status)


def error_for(message: str) -> HivemindError:
    """Turn a pool's `CODE: words` failure message (or a HiveMind pool's text) into the error of that meaning."""
    code = hivemind_code(message) or message.split(":", 1)[0].strip() or "REJECTED"
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
    "error_for_status",
]
