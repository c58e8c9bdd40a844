"""WireGuard management: keys equal to wg's, the address pool under concurrency, peers, files, CLI."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hivemind_tui.core.config import Settings
from hivemind_tui.core.errors import UsageError
from hivemind_tui.core.logging_setup import configure_logging
from hivemind_tui.services.store import Store
from hivemind_tui.services.wireguard import (
    VpnError,
    WireGuard,
    generate_private_key,
    parse_dump,
    public_key,
)
from tests.conftest import fast_settings
from tests.system import require_tools


@pytest.fixture
async def wg(tmp_path: Path) -> AsyncIterator[WireGuard]:
    settings = fast_settings(tmp_path / "data", vpn_endpoint="vpn.example.org")
    async with Store(settings.data_path / "console.db") as store:
        service = WireGuard(settings, settings.data_path / "vpn", store)
        await service.init()
        yield service


def test_keys_match_wg_both_ways() -> None:
    require_tools("wg")
    ours = [generate_private_key() for _ in range(100)]
    for key in ours:
        out = subprocess.run(["wg", "pubkey"], input=key + "\n", capture_output=True, text=True, check=True)
        assert out.stdout.strip() == public_key(key)
    for _ in range(20):
        theirs = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout.strip()
        out = subprocess.run(["wg", "pubkey"], input=theirs + "\n", capture_output=True, text=True, check=True)
        assert public_key(theirs) == out.stdout.strip()


def test_private_keys_are_clamped() -> None:
    import base64

    for _ in range(200):
        raw = base64.b64decode(generate_private_key())
        assert len(raw) == 32 and raw[0] & 7 == 0 and raw[31] & 0x80 == 0 and raw[31] & 0x40


async def test_concurrent_adds_get_distinct_addresses_then_the_pool_is_full(wg: WireGuard) -> None:
    made = await asyncio.gather(*(wg.add(f"peer-{i}", "ops", actor="test") for i in range(200)))
    addresses = {m.peer.address for m in made}
    assert len(addresses) == 200 and "10.0.0.1" not in addresses and "10.0.0.0" not in addresses
    await asyncio.gather(*(wg.add(f"more-{i}", "ops", actor="test") for i in range(53)))  # 254 hosts - the server
    with pytest.raises(VpnError) as err:
        await wg.add("one-too-many", "ops", actor="test")
    assert err.value.code == "POOL_FULL" and "full" in err.value.message
    assert "10.0.0.255" not in {p.address for p in await wg.peers()}


async def test_revoke_reuses_the_lowest_address(wg: WireGuard) -> None:
    a = await wg.add("a", "ops", actor="test")
    b = await wg.add("b", "ops", actor="test")
    await wg.add("c", "ops", actor="test")
    assert (a.peer.address, b.peer.address) == ("10.0.0.2", "10.0.0.3")
    await wg.revoke("b", actor="test")
    assert (await wg.add("d", "ops", actor="test")).peer.address == "10.0.0.3"
    assert (await wg.add("b", "ops", actor="test")).peer.address == "10.0.0.5"  # a revoked name may be used again
    config = await wg.server_config()
    assert config.count("[Peer]") == 4 and "# a (ops)" in config


async def test_configs_split_tunnel_and_kept_keys(wg: WireGuard, tmp_path: Path) -> None:
    made = await wg.add("phone", "alice", ("192.168.10.0/24",), keep_private_key=True, actor="test")
    assert "AllowedIPs = 10.0.0.0/24, 192.168.10.0/24" in made.config
    assert "Endpoint = vpn.example.org:51820" in made.config and "PersistentKeepalive = 25" in made.config
    assert f"PrivateKey = {made.private_key}" in made.config and "MTU = 1420" in made.config
    assert await wg.kept_config("phone") == made.config
    full = await wg.add("laptop", "alice", actor="test")
    assert "AllowedIPs = 0.0.0.0/0, ::/0" in full.config
    with pytest.raises(VpnError) as err:
        await wg.kept_config("laptop")
    assert err.value.code == "KEY_NOT_KEPT" and "vpn rekey" in err.value.message
    rekeyed = await wg.rekey("laptop", actor="test")
    assert rekeyed.peer.public_key != full.peer.public_key and rekeyed.peer.address == full.peer.address
    key_files = list((wg.dir / "peers").iterdir())
    assert len(key_files) == 1 and stat.S_IMODE(key_files[0].stat().st_mode) == 0o600
    for path in wg.dir.iterdir():
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    out = tmp_path / "x.conf"
    await wg.export(out, made.config)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    await wg.revoke("phone", actor="test")
    assert list((wg.dir / "peers").iterdir()) == []


@pytest.mark.parametrize("name", ["", "a\nb", "tab\there", "x" * 65, " padded", "bell\x07"])
async def test_bad_names(wg: WireGuard, name: str) -> None:
    with pytest.raises(UsageError):
        await wg.add(name, "ops", actor="test")
    assert await wg.peers() == []


async def test_duplicate_name_and_missing_init(wg: WireGuard, tmp_path: Path) -> None:
    await wg.add("dup", "ops", actor="test")
    with pytest.raises(VpnError, match="exists"):
        await wg.add("dup", "ops", actor="test")
    with pytest.raises(VpnError, match="already exists"):
        await wg.init()
    async with Store(tmp_path / "other.db") as store:
        bare = WireGuard(Settings(), tmp_path / "novpn", store)
        with pytest.raises(VpnError, match="vpn init"):
            await bare.add("x", "ops", actor="test")


def test_parse_dump() -> None:
    dump = (
        "priv\tpub\t51820\toff\n"
        "PEERKEY=\tpsk\t192.0.2.9:4444\t10.0.0.2/32\t1800000000\t100\t200\t25\n"
        "OTHER=\t(none)\t(none)\t10.0.0.3/32\t0\t0\t0\toff\n"
    )
    status = parse_dump(dump)
    assert status["PEERKEY="].endpoint == "192.0.2.9:4444" and status["PEERKEY="].rx_bytes == 100
    assert status["PEERKEY="].connected(1_800_000_100) and not status["PEERKEY="].connected(1_800_000_200)
    assert status["OTHER="].latest_handshake is None and status["OTHER="].endpoint is None


async def test_no_private_key_in_the_log(tmp_path: Path) -> None:
    log_file = configure_logging(tmp_path / "logs", "cli")
    settings = fast_settings(tmp_path / "data")
    async with Store(tmp_path / "console.db") as store:
        service = WireGuard(settings, tmp_path / "vpn", store)
        await service.init()
        made = await service.add("laptop", "ops", keep_private_key=True, actor="test")
        import logging

        logging.getLogger("test").info("config was:\n%s", made.config)
        server = await service.server_config()
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = log_file.read_text()
    server_key = (tmp_path / "vpn" / "server.key").read_text().strip()
    assert made.private_key not in text and server_key not in text and made.peer.preshared_key not in text
    assert server_key in server


def test_cli_vpn_commands(tmp_path: Path) -> None:
    env = {**os.environ, "VPN_SERVER_IP": "203.0.113.7"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hivemind_tui", "--data-dir", str(tmp_path / "d"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert json.loads(run("vpn", "init", "--json").stdout)["pool"] == "10.0.0.0/24"
    added = json.loads(run("vpn", "add", "laptop", "--split", "192.168.1.0/24", "--qr", "--json").stdout)
    assert added["peer"]["mode"] == "split" and "PrivateKey" in added["config"] and added["qr"]
    out = tmp_path / "phone.conf"
    assert run("vpn", "add", "phone", "--output", str(out), "--qr-file", str(tmp_path / "q.svg")).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and (tmp_path / "q.svg").read_text().startswith("<?xml")
    listed = json.loads(run("vpn", "list", "--json").stdout)["peers"]
    assert {p["name"] for p in listed} == {"laptop", "phone"}
    assert {
        "name",
        "address",
        "public_key",
        "owner",
        "mode",
        "created_at",
        "revoked",
        "handshake_at",
        "connected",
    } <= set(listed[0])
    assert run("vpn", "show", "laptop", "--json").returncode == 0
    assert json.loads(run("vpn", "revoke", "laptop", "--json").stdout)["revoked"] == "laptop"
    assert run("--readonly", "vpn", "add", "x").returncode == 5
    bad = run("vpn", "add", "bad\nname", "--json")
    assert bad.returncode == 2 and "control" in json.loads(bad.stdout)["error"]["message"]
    assert run("vpn", "add", "x", "--split", "nonsense").returncode == 2
    dry = json.loads(run("vpn", "apply", "--dry-run", "--json").stdout)
    assert dry["dry_run"] and dry["config_file"].endswith("wg0.conf") and "wg syncconf" in dry["commands"][1]
    log_text = (tmp_path / "d" / "logs" / "cli.log").read_text()
    assert added["config"].split("PrivateKey = ")[1].split("\n")[0] not in log_text


def vpn_cli(data: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data), "vpn", *args],
        env={**os.environ, "VPN_SERVER_IP": "vpn.example.org", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("action", ["add", "rekey", "revoke"])
def test_a_busy_store_is_one_line_and_changes_nothing(tmp_path: Path, action: str) -> None:
    import sqlite3

    data = tmp_path / "data"
    assert vpn_cli(data, "init").returncode == 0
    if action != "add":
        assert vpn_cli(data, "add", "laptop", "--keep-private-key").returncode == 0

    def state() -> tuple[str, str]:
        audit = subprocess.run(
            [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data), "audit", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return vpn_cli(data, "list", "--all", "--json").stdout, audit.stdout

    before = state()
    holder = sqlite3.connect(data / "console.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer than the busy timeout
    try:
        proc = vpn_cli(data, action, "laptop", env={"HIVEMIND_DB_BUSY_TIMEOUT": "0.3"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "busy" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert "PrivateKey" not in proc.stdout
    assert state() == before  # neither the peer nor its audit row changed
    assert bool(list((data / "vpn" / "peers").glob("*.key"))) == (action != "add")


async def test_200_concurrent_adds_rekeys_and_revokes_on_their_own_connections(tmp_path: Path) -> None:
    """Each change on its own SQLite connection, as 200 processes would have: every one lands, and each
    peer's change and its audit row land together."""
    settings = fast_settings(tmp_path / "data", vpn_endpoint="vpn.example.org", vpn_address_pool="10.9.0.0/23")
    async with Store(settings.data_path / "console.db") as store:
        await WireGuard(settings, settings.data_path / "vpn", store).init()

    async def one(action: str, name: str) -> None:
        async with Store(settings.data_path / "console.db") as own:
            wg = WireGuard(settings, settings.data_path / "vpn", own)
            if action == "add":
                await wg.add(name, "ops", actor="ops")
            elif action == "rekey":
                await wg.rekey(name, actor="ops")
            else:
                await wg.revoke(name, actor="ops")

    names = [f"p{i}" for i in range(200)]
    for action in ("add", "rekey", "revoke"):
        await asyncio.gather(*(one(action, n) for n in names))
    async with Store(settings.data_path / "console.db") as store:
        rows = await store.fetchall("SELECT address, revoked_at FROM vpn_peers")
        assert len(rows) == 200 and len({r["address"] for r in rows}) == 200
        assert all(r["revoked_at"] is not None for r in rows)
        audit = await store.fetchall("SELECT action, COUNT(*) AS n FROM audit GROUP BY action")
        assert {r["action"]: r["n"] for r in audit} == {
            "vpn_add": 200,
            "vpn_rekey": 200,
            "vpn_revoke": 200,
        }
