"""The one allowed skip: system tests that need root or Debian packages.

They skip with the reason printed, except under HIVEMIND_SYSTEM_TESTS=1 (set by .ci/run), where a missing
prerequisite fails them instead.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("HIVEMIND_SYSTEM_TESTS") == "1":
        pytest.fail(f"system test prerequisite missing (HIVEMIND_SYSTEM_TESTS=1): {reason}")
    pytest.skip(reason)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root")


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    require(not missing, "needs " + ", ".join(missing) + " (Debian packages; .ci/run installs them)")
