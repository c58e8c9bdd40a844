"""The one allowed skip: system tests that need root or Debian packages.

They skip with the reason printed, except under HIVEMIND_SYSTEM_TESTS=1 (set by .ci/run), where a missing
prerequisite fails them instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

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


def require_wireguard_namespaces() -> None:
    """Root, the WireGuard tools, /dev/net/tun, and network namespaces that can really be made here."""
    require_root()
    require_tools("ip", "wg", "wg-quick", "wireguard-go")
    require(Path("/dev/net/tun").exists(), "needs /dev/net/tun for wireguard-go")
    name = f"hm-probe-{secrets.token_hex(2)}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=30)
    require(probe.returncode == 0, f"cannot create network namespaces here: {probe.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
