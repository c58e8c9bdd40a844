"""A real WireGuard tunnel between two network namespaces made by this test, from our configs.

The test hosts are namespaces this test creates and removes (the one exception to loopback-only): a veth
pair with TEST-NET addresses that exist only inside them, wireguard-go in each, our server and client
configs loaded with `wg setconf` after `wg-quick strip`, then a ping across the tunnel; after revoking the
client and loading the new server config, the ping fails.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hivemind_tui.services.store import Store
from hivemind_tui.services.wireguard import WireGuard
from tests.conftest import fast_settings
from tests.system import require_tools, require_wireguard_namespaces


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


class Namespaces:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.a, self.b = f"hm-a-{tag}", f"hm-b-{tag}"
        self.wa, self.wb = f"hmwa{tag}", f"hmwb{tag}"
        self.procs: list[subprocess.Popen] = []

    def run(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", ns, *args, check=check)

    def up(self) -> None:
        sh("ip", "netns", "add", self.a)
        sh("ip", "netns", "add", self.b)
        sh("ip", "link", "add", "va", "netns", self.a, "type", "veth", "peer", "name", "vb", "netns", self.b)
        self.run(self.a, "ip", "addr", "add", "192.0.2.1/24", "dev", "va")
        self.run(self.b, "ip", "addr", "add", "192.0.2.2/24", "dev", "vb")
        for ns, dev in ((self.a, "va"), (self.b, "vb")):
            self.run(ns, "ip", "link", "set", dev, "up")
            self.run(ns, "ip", "link", "set", "lo", "up")
        env = {**os.environ, "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
        for ns, dev in ((self.a, self.wa), (self.b, self.wb)):
            self.procs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", ns, "wireguard-go", "-f", dev],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + 10
        while not all(Path(f"/var/run/wireguard/{d}.sock").exists() for d in (self.wa, self.wb)):
            assert time.monotonic() < deadline, "wireguard-go did not start"
            time.sleep(0.05)

    def load(self, ns: str, dev: str, config: str, workdir: Path) -> None:
        conf = workdir / f"{dev}.conf"  # wg-quick strip only takes IFACE.conf
        conf.write_text(config)
        conf.chmod(0o600)
        stripped = sh("wg-quick", "strip", str(conf)).stdout
        plain = workdir / f"{dev}.stripped"
        plain.write_text(stripped)
        self.run(ns, "wg", "setconf", dev, str(plain))

    def ping(self, ns: str, address: str, tries: int) -> bool:
        for _ in range(tries):
            if self.run(ns, "ping", "-c", "1", "-W", "1", address, check=False).returncode == 0:
                return True
        return False

    def down(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in (self.a, self.b):
            sh("ip", "netns", "del", ns, check=False)
        for dev in (self.wa, self.wb):
            Path(f"/var/run/wireguard/{dev}.sock").unlink(missing_ok=True)


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    require_wireguard_namespaces()
    require_tools("ping")
    spaces = Namespaces()
    try:
        spaces.up()
        yield spaces
    finally:
        spaces.down()


async def test_tunnel_carries_traffic_until_the_client_is_revoked(namespaces: Namespaces, tmp_path: Path) -> None:
    settings = fast_settings(
        tmp_path / "data",
        vpn_endpoint="192.0.2.1",
        vpn_address_pool="10.213.0.0/24",
        vpn_interface=namespaces.wa,
        vpn_keepalive=1,
    )
    async with Store(tmp_path / "console.db") as store:
        wg = WireGuard(settings, tmp_path / "vpn", store)
        await wg.init()
        client = await wg.add("client", "test", ("10.213.0.0/24",), actor="test")
        namespaces.load(namespaces.a, namespaces.wa, await wg.server_config(), tmp_path)
        namespaces.load(namespaces.b, namespaces.wb, client.config, tmp_path)
        namespaces.run(namespaces.a, "ip", "addr", "add", "10.213.0.1/24", "dev", namespaces.wa)
        namespaces.run(namespaces.b, "ip", "addr", "add", f"{client.peer.address}/24", "dev", namespaces.wb)
        for ns, dev in ((namespaces.a, namespaces.wa), (namespaces.b, namespaces.wb)):
            namespaces.run(ns, "ip", "link", "set", dev, "up")
        assert namespaces.ping(namespaces.b, "10.213.0.1", tries=10), "no ping across the tunnel"
        dump = namespaces.run(namespaces.a, "wg", "show", namespaces.wa, "dump").stdout
        assert client.peer.public_key in dump
        await wg.revoke("client", actor="test")
        namespaces.load(namespaces.a, namespaces.wa, await wg.server_config(), tmp_path)
        assert not namespaces.ping(namespaces.b, "10.213.0.1", tries=3), "the revoked client still reaches the server"
