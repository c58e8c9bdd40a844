"""Logs go to a rotating file only, and secrets never reach it, tracebacks included."""

from __future__ import annotations

import logging
import secrets
import subprocess
import sys
from pathlib import Path

import nacl.public

from hivemind_tui.core.logging_setup import configure_logging, redact, register_secret


def test_registered_secret_and_patterns_are_redacted_in_file_and_traceback(tmp_path: Path) -> None:
    path = configure_logging(tmp_path / "logs", "cli")
    token = secrets.token_urlsafe(32)
    password = "correct horse battery staple"
    private_key = __import__("base64").b64encode(bytes(nacl.public.PrivateKey.generate())).decode()
    register_secret(token)
    log = logging.getLogger("hivemind_tui.test")
    log.info("got token %s", token)
    log.info("login with password=%s", password)
    log.info("config:\n[Interface]\nPrivateKey = %s\n", private_key)
    try:
        raise ValueError(f"bad request {{'token': '{token}', 'password': '{password}'}}")
    except ValueError:
        log.exception("rpc failed")
    logging.getLogger("grpc._cython").warning("child logger old_token=%s", token)
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text()
    assert token not in text and password not in text and private_key not in text
    assert text.count("<redacted>") >= 5
    assert "Traceback" in text and "ValueError" in text


def test_redact_leaves_ordinary_text() -> None:
    assert redact("node n1 went offline at 12:00") == "node n1 went offline at 12:00"


def test_rotation_settings(tmp_path: Path) -> None:
    configure_logging(tmp_path / "logs", "pool")
    (handler,) = logging.getLogger().handlers
    assert handler.maxBytes == 10 * 1024 * 1024 and handler.backupCount == 10  # type: ignore[attr-defined]
    assert Path(handler.baseFilename).name == "pool.log"  # type: ignore[attr-defined]


def test_nothing_on_the_terminal(tmp_path: Path) -> None:
    code = (
        "import logging, sys; from hivemind_tui.core.logging_setup import configure_logging;"
        f"configure_logging(__import__('pathlib').Path({str(tmp_path)!r}), 'console');"
        "logging.getLogger('x').error('boom'); logging.getLogger('grpc').warning('grpc says');"
        "import warnings; warnings.warn('careful')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    text = (tmp_path / "console.log").read_text()
    assert "boom" in text and "grpc says" in text and "careful" in text
