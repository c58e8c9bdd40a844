"""Benchmark of the VPN service (prints figures; CI does not run it).

    python tests/perf/bench_vpn.py

- client key material and config text per second from our service (PyNaCl), next to the same work done by
  spawning `wg genkey`, `wg pubkey` and `wg genpsk` in the same run (goal: at least 40x);
- the time to add 250 peers to the store one by one (goal: under 2 s).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hivemind_tui.core.config import Settings
from hivemind_tui.services.store import Store
from hivemind_tui.services.wireguard import (
    Peer,
    ServerIdentity,
    WireGuard,
    generate_preshared_key,
    generate_private_key,
    public_key,
)

SERVER = ServerIdentity(
    "S" * 43 + "=", 51820, "10.0.0.1", "", "vpn.example.org", "wg0", "10.0.0.0/24", "", "", 1420, 25, 0.0
)


def ours(count: int, wg: WireGuard) -> float:
    start = time.perf_counter()
    for i in range(count):
        private = generate_private_key()
        peer = Peer(
            i, f"p{i}", "o", "10.0.0.2", "", public_key(private), generate_preshared_key(), "full", (), False, 0.0, None
        )
        wg.client_config(SERVER, peer, private)
    return count / (time.perf_counter() - start)


def spawning(count: int, wg: WireGuard) -> float:
    start = time.perf_counter()
    for i in range(count):
        private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout.strip()
        public = subprocess.run(
            ["wg", "pubkey"], input=private, capture_output=True, text=True, check=True
        ).stdout.strip()
        psk = subprocess.run(["wg", "genpsk"], capture_output=True, text=True, check=True).stdout.strip()
        peer = Peer(i, f"p{i}", "o", "10.0.0.2", "", public, psk, "full", (), False, 0.0, None)
        wg.client_config(SERVER, peer, private)
    return count / (time.perf_counter() - start)


async def adds(count: int) -> float:
    work = Path(tempfile.mkdtemp(prefix="bench-vpn-"))
    try:
        async with Store(work / "console.db") as store:
            wg = WireGuard(Settings(vpn_address_pool="10.0.0.0/16"), work / "vpn", store)
            await wg.init()
            start = time.perf_counter()
            for i in range(count):
                await wg.add(f"peer-{i}", "bench", actor="test")
            return time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    wg = WireGuard(Settings(), Path("/nonexistent"), None)  # type: ignore[arg-type]
    rate = ours(2000, wg)
    if shutil.which("wg"):
        base = spawning(100, wg)
        print(
            f"client key material + config: ours {rate:.0f}/s, spawning wg {base:.0f}/s, ratio {rate / base:.0f}x "
            "(goal >= 40x)"
        )
    else:
        print(f"client key material + config: ours {rate:.0f}/s (wg is not installed: no baseline)")
    print(f"250 peers added one by one: {asyncio.run(adds(250)):.2f} s (goal < 2 s)")


if __name__ == "__main__":
    main()
