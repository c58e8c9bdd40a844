"""Errors that the command line turns into an exit code and a stable error code.

Each error class carries its exit code (the README's exit code table), so a service can fail with the right meaning and
the command line never has to guess from message text.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The command line's exit codes, as the README lists them."""

    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    NOT_AUTHENTICATED = 4
    NOT_PERMITTED = 5
    NOT_SUPPORTED = 6


class HivemindError(Exception):
    """Base of every error meant for a person; its text must never carry a secret."""

    exit_code: ExitCode = ExitCode.FAILED
    code: str = "FAILED"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class UsageError(HivemindError):
    exit_code = ExitCode.USAGE
    code = "USAGE"


class ConfigError(UsageError):
    """A setting has a value it cannot take; the message names the key and where the value came from."""

    code = "CONFIG"


class UnreachableError(HivemindError):
    exit_code = ExitCode.UNREACHABLE
    code = "UNREACHABLE"


class TlsProblemError(UnreachableError):
    """The pool answers, but TLS between us fails; the message names the cause (see core/tls_probe)."""

    code = "TLS"


class NotAuthenticatedError(HivemindError):
    exit_code = ExitCode.NOT_AUTHENTICATED
    code = "NOT_AUTHENTICATED"


class NotPermittedError(HivemindError):
    exit_code = ExitCode.NOT_PERMITTED
    code = "PERMISSION_DENIED"


class NotSupportedError(HivemindError):
    exit_code = ExitCode.NOT_SUPPORTED
    code = "NOT_SUPPORTED"
