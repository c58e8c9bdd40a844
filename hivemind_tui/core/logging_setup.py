"""Logging to one rotating file per process kind, with secrets redacted in the formatter.

Redaction lives in the formatter, not in a filter, so that it covers the formatted traceback and every
child logger (grpc's included). Two nets catch secrets: values registered at run time (a token just
received, a password just typed) and patterns for the shapes secrets take in text (`token=...`,
`PrivateKey = ...`, bearer headers).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import threading
from pathlib import Path

from hivemind_tui.core.datadir import make_private_dir

LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 10
REDACTED = "<redacted>"

_PATTERNS = [
    # key=value and key: value for secret-looking keys, quoted or not.
    re.compile(
        r"(?i)\b((?:old_|new_)?token|password|passwd|secret|private_?key|preshared_?key|authorization)"
        r"(\s*[=:]\s*|['\"]\s*:\s*['\"]?)(bearer\s+)?([^\s'\",}]+)"
    ),
    # WireGuard config lines.
    re.compile(r"(?i)^(\s*(?:PrivateKey|PresharedKey)\s*=\s*)()()(\S+)", re.M),
]

_secrets: set[str] = set()
_longest_first: tuple[str, ...] = ()  # the secrets in the order redact() looks for them
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a secret value so that it is redacted wherever it appears in a log line."""
    global _longest_first
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)
            _longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    """Replace every registered secret and every secret-shaped key/value in `text`."""
    for value in _longest_first:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{REDACTED}", text)
    return text


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class SizeRotatingHandler(logging.handlers.RotatingFileHandler):
    """Rotates once the file has reached its size, told by the file's position. Python's handler formats
    (here: formats and redacts) each record a second time to see whether it would overflow the file, which
    was half of what a log line cost: ~0.9 ms of the pool's CPU a task for its three lines."""

    def shouldRollover(self, record: logging.LogRecord) -> int:
        if self.stream is None:
            self.stream = self._open()
        return int(0 < self.maxBytes <= self.stream.tell())


def log_path(logs_dir: Path, process: str) -> Path:
    return logs_dir / f"{process}.log"


def configure_logging(logs_dir: Path, process: str, level: str = "info") -> Path:
    """Send every log record of this process to `logs_dir/<process>.log`, and nowhere else.

    The root logger gets exactly one handler, so nothing reaches the terminal the console draws on
    (logging's last-resort stderr handler only acts when there is none).
    """
    make_private_dir(logs_dir)
    path = log_path(logs_dir, process)
    handler = SizeRotatingHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8", delay=False)
    os.chmod(path, 0o600)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    return path


def quiet_grpc_core() -> None:
    """Keep gRPC's C core off fd 2 (the console draws there) unless the user asked for its output.

    Must run before `grpc` is imported.
    """
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
