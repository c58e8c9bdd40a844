"""WireGuard management: keys, the server identity, an address pool, peers, configs, apply, status, QR.

Keys are made with PyNaCl exactly as `wg` makes them: 32 random bytes clamped as `wg genkey` clamps them,
public keys by X25519 scalar multiplication of the base point (what `wg pubkey` prints), preshared keys
of 32 random bytes (`wg genpsk`). A client's private key is shown once, when the peer is created, and kept
only when asked (then 0600 in `DATA_DIR/vpn/peers/`). Every file written is 0600 and written atomically.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nacl.bindings

from hivemind_tui.core.clock import Clock, system_clock
from hivemind_tui.core.config import Settings
from hivemind_tui.core.datadir import atomic_write, make_private_dir
from hivemind_tui.core.errors import HivemindError, UsageError
from hivemind_tui.core.logging_setup import register_secret
from hivemind_tui.services.audit import AuditLog
from hivemind_tui.services.store import Store

log = logging.getLogger(__name__)

CONNECTED_WITHIN = 180.0
MAX_NAME = 64


class VpnError(HivemindError):
    code = "VPN"


# -- keys -------------------------------------------------------------------------------------------
def clamp(key: bytes) -> bytes:
    """X25519 clamping, as `wg genkey` applies it."""
    raw = bytearray(key)
    raw[0] &= 248
    raw[31] &= 127
    raw[31] |= 64
    return bytes(raw)


def generate_private_key() -> str:
    key = base64.b64encode(clamp(secrets.token_bytes(32))).decode()
    register_secret(key)
    return key


def public_key(private_key: str) -> str:
    try:
        raw = base64.b64decode(private_key.strip(), validate=True)
    except ValueError:
        raise UsageError("not a WireGuard key (base64 of 32 bytes)") from None
    if len(raw) != 32:
        raise UsageError("not a WireGuard key (base64 of 32 bytes)")
    return base64.b64encode(nacl.bindings.crypto_scalarmult_base(clamp(raw))).decode()


def generate_preshared_key() -> str:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    register_secret(key)
    return key


# -- records ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServerIdentity:
    public_key: str
    listen_port: int
    address: str
    address6: str
    endpoint: str
    interface: str
    pool: str
    pool6: str
    dns: str
    mtu: int
    keepalive: int
    created_at: float


@dataclass(frozen=True)
class Peer:
    id: int
    name: str
    owner: str
    address: str
    address6: str
    public_key: str
    preshared_key: str
    mode: str
    networks: tuple[str, ...]
    key_kept: bool
    created_at: float
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_worker(self) -> bool:
        """A worker host's peer (`vpn add --worker`): a split tunnel of the VPN subnet alone and no DNS, so
        `wg-quick up` changes nothing else on a server. Stored as a split peer without extra networks."""
        return self.mode == "split" and not self.networks

    @property
    def allowed_ips(self) -> str:
        return f"{self.address}/32" + (f", {self.address6}/128" if self.address6 else "")


@dataclass(frozen=True)
class PeerStatus:
    public_key: str
    endpoint: str | None
    latest_handshake: float | None
    rx_bytes: int
    tx_bytes: int

    def connected(self, now: float) -> bool:
        return self.latest_handshake is not None and now - self.latest_handshake < CONNECTED_WITHIN


@dataclass(frozen=True)
class NewPeer:
    """A peer just made: its record, and (once only) its private key and full client config."""

    peer: Peer
    private_key: str
    config: str


def _peer(row: Any) -> Peer:
    networks = tuple(n for n in row["networks"].split(",") if n)
    return Peer(
        row["id"],
        row["name"],
        row["owner"],
        row["address"],
        row["address6"],
        row["public_key"],
        row["preshared_key"],
        row["mode"],
        networks,
        bool(row["key_kept"]),
        row["created_at"],
        row["revoked_at"],
    )


def check_name(name: str) -> str:
    """Names land in config comments: no control characters, no newlines, not empty, not too long."""
    if not name or len(name) > MAX_NAME or not name.isprintable() or name != name.strip():
        raise UsageError(
            f"peer name {name[:80]!r}: 1 to {MAX_NAME} printable characters, no newlines or "
            "control characters, no spaces at either end"
        )
    return name


def parse_networks(text: str) -> tuple[str, ...]:
    nets = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            nets.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise UsageError(f"--split {part!r}: not a network such as 192.168.10.0/24") from None
    if not nets:
        raise UsageError("--split needs at least one network such as 192.168.10.0/24")
    return tuple(nets)


# -- the service -------------------------------------------------------------------------------------
class WireGuard:
    def __init__(self, settings: Settings, vpn_dir: Path, store: Store, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.dir = vpn_dir
        self.store = store
        self.clock = clock
        self._audit = AuditLog(store, clock)

    @property
    def _server_json(self) -> Path:
        return self.dir / "server.json"

    @property
    def _server_key(self) -> Path:
        return self.dir / "server.key"

    def _peer_key(self, name: str) -> Path:
        return self.dir / "peers" / f"{base64.urlsafe_b64encode(name.encode()).decode().rstrip('=')}.key"

    # -- server identity --------------------------------------------------------------------------
    async def init(self) -> ServerIdentity:
        if self._server_json.exists():
            raise VpnError(f"the VPN server already exists in {self.dir}; its key is kept", code="EXISTS")
        s = self.settings
        pool = ipaddress.ip_network(s.vpn_address_pool)
        pool6 = ipaddress.ip_network(s.vpn_address_pool6) if s.vpn_address_pool6 else None
        private = generate_private_key()
        identity = ServerIdentity(
            public_key=public_key(private),
            listen_port=s.vpn_port,
            address=str(next(pool.hosts())),
            address6=str(next(pool6.hosts())) if pool6 else "",
            endpoint=s.vpn_endpoint,
            interface=s.vpn_interface,
            pool=str(pool),
            pool6=str(pool6) if pool6 else "",
            dns=s.vpn_dns,
            mtu=s.vpn_mtu,
            keepalive=s.vpn_keepalive,
            created_at=self.clock(),
        )

        def write() -> None:
            make_private_dir(self.dir)
            atomic_write(self._server_key, (private + "\n").encode(), 0o600)
            atomic_write(self._server_json, json.dumps(asdict(identity), indent=1).encode(), 0o600)

        await asyncio.to_thread(write)
        log.info("VPN server identity created (%s)", identity.public_key)
        return identity

    async def server(self) -> ServerIdentity:
        try:
            data = json.loads(await asyncio.to_thread(self._server_json.read_text))
        except FileNotFoundError:
            raise VpnError("no VPN server yet: run `hivemind-tui vpn init`", code="NOT_INITIALIZED") from None
        return ServerIdentity(**data)

    async def _server_private(self) -> str:
        key = (await asyncio.to_thread(self._server_key.read_text)).strip()
        register_secret(key)
        return key

    # -- peers ------------------------------------------------------------------------------------
    async def peers(self, include_revoked: bool = False, owner: str | None = None) -> list[Peer]:
        where, params = [], []
        if not include_revoked:
            where.append("revoked_at IS NULL")
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT * FROM vpn_peers{clause} ORDER BY id"  # noqa: S608 - fixed fragments, values bound
        return [_peer(r) for r in await self.store.fetchall(sql, params)]

    async def peer(self, name: str) -> Peer:
        row = await self.store.fetchone("SELECT * FROM vpn_peers WHERE name = ? AND revoked_at IS NULL", (name,))
        if row is None:
            raise VpnError(f"no active peer named {name[:80]!r}", code="PEER_NOT_FOUND")
        return _peer(row)

    async def add(
        self,
        name: str,
        owner: str,
        networks: tuple[str, ...] = (),
        keep_private_key: bool = False,
        *,
        actor: str,
        worker: bool = False,
    ) -> NewPeer:
        """Take the lowest free address, insert the peer and its audit row in one write transaction, so
        concurrent adds never collide and a failed add leaves nothing."""
        check_name(name)
        server = await self.server()
        private = generate_private_key()
        psk = generate_preshared_key()
        pool = ipaddress.ip_network(server.pool)
        pool6 = ipaddress.ip_network(server.pool6) if server.pool6 else None
        try:
            async with self.store.write() as conn:
                if await (
                    await conn.execute("SELECT 1 FROM vpn_peers WHERE name = ? AND revoked_at IS NULL", (name,))
                ).fetchone():
                    raise VpnError(f"a peer named {name!r} exists; revoke it or pick another name", code="EXISTS")
                used = {
                    r[0]
                    for r in await (
                        await conn.execute("SELECT address FROM vpn_peers WHERE revoked_at IS NULL")
                    ).fetchall()
                }
                used.add(server.address)
                address = next((str(h) for h in pool.hosts() if str(h) not in used), None)
                if address is None:
                    raise VpnError(
                        f"the address pool {server.pool} is full: revoke a peer or widen vpn_address_pool",
                        code="POOL_FULL",
                    )
                offset = int(ipaddress.ip_address(address)) - int(pool.network_address)
                address6 = str(pool6.network_address + offset) if pool6 else ""
                cursor = await conn.execute(
                    "INSERT INTO vpn_peers (name, owner, address, address6, public_key, preshared_key, mode, "
                    "networks, key_kept, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        owner,
                        address,
                        address6,
                        public_key(private),
                        psk,
                        "split" if networks or worker else "full",
                        "" if worker else ",".join(networks),
                        int(keep_private_key),
                        self.clock(),
                    ),
                )
                row = await (await conn.execute("SELECT * FROM vpn_peers WHERE id = ?", (cursor.lastrowid,))).fetchone()
                mode = "worker" if worker else "split" if networks else "full"
                await self._audit.record_in(conn, actor, "vpn_add", name, f"{address} {mode}")
        except sqlite3.IntegrityError:
            raise VpnError(f"a peer named {name!r} exists", code="EXISTS") from None
        peer = _peer(row)
        if keep_private_key:
            await asyncio.to_thread(self._keep_key, name, private)
        log.info("VPN peer %s added at %s", name, address)
        return NewPeer(peer, private, self.client_config(server, peer, private))

    def _keep_key(self, name: str, private: str) -> None:
        make_private_dir(self.dir / "peers")
        atomic_write(self._peer_key(name), (private + "\n").encode(), 0o600)

    async def kept_config(self, name: str) -> str:
        """The full client config again, possible only for peers whose key was kept."""
        peer = await self.peer(name)
        if not peer.key_kept:
            raise VpnError(
                f"the private key of {name!r} was shown once and not kept; `vpn rekey {name}` issues "
                "a new key pair (the old config stops working)",
                code="KEY_NOT_KEPT",
            )
        private = (await asyncio.to_thread(self._peer_key(name).read_text)).strip()
        register_secret(private)
        return self.client_config(await self.server(), peer, private)

    async def rekey(self, name: str, *, actor: str) -> NewPeer:
        peer = await self.peer(name)
        private = generate_private_key()
        psk = generate_preshared_key()
        async with self.store.write() as conn:
            await conn.execute(
                "UPDATE vpn_peers SET public_key = ?, preshared_key = ? WHERE id = ?",
                (public_key(private), psk, peer.id),
            )
            row = await (await conn.execute("SELECT * FROM vpn_peers WHERE id = ?", (peer.id,))).fetchone()
            await self._audit.record_in(conn, actor, "vpn_rekey", name)
        fresh = _peer(row)
        if fresh.key_kept:
            await asyncio.to_thread(self._keep_key, name, private)
        log.info("VPN peer %s rekeyed", name)
        return NewPeer(fresh, private, self.client_config(await self.server(), fresh, private))

    async def revoke(self, name: str, *, actor: str) -> Peer:
        peer = await self.peer(name)
        async with self.store.write() as conn:
            await conn.execute("UPDATE vpn_peers SET revoked_at = ? WHERE id = ?", (self.clock(), peer.id))
            await self._audit.record_in(conn, actor, "vpn_revoke", name, peer.address)
        await asyncio.to_thread(self._peer_key(name).unlink, True)
        log.info("VPN peer %s revoked", name)
        return peer

    # -- configs ----------------------------------------------------------------------------------
    @staticmethod
    def client_config(server: ServerIdentity, peer: Peer, private_key: str) -> str:
        allowed = (
            "0.0.0.0/0, ::/0"
            if peer.mode == "full"
            else ", ".join((server.pool, *([server.pool6] if server.pool6 else []), *peer.networks))
        )
        lines = [
            "[Interface]",
            f"# hivemind-tui peer {peer.name}",
            f"PrivateKey = {private_key}",
            f"Address = {peer.address}/32" + (f", {peer.address6}/128" if peer.address6 else ""),
        ]
        if server.dns and not peer.is_worker:
            lines.append(f"DNS = {server.dns}")
        lines += [
            f"MTU = {server.mtu}",
            "",
            "[Peer]",
            "# hivemind-tui server",
            f"PublicKey = {server.public_key}",
            f"PresharedKey = {peer.preshared_key}",
            f"AllowedIPs = {allowed}",
        ]
        if server.endpoint:
            host = f"[{server.endpoint}]" if ":" in server.endpoint else server.endpoint
            lines.append(f"Endpoint = {host}:{server.listen_port}")
        if server.keepalive:
            lines.append(f"PersistentKeepalive = {server.keepalive}")
        return "\n".join(lines) + "\n"

    async def server_config(self) -> str:
        server = await self.server()
        net = ipaddress.ip_network(server.pool)
        address = f"{server.address}/{net.prefixlen}"
        if server.address6:
            address += f", {server.address6}/{ipaddress.ip_network(server.pool6).prefixlen}"
        lines = [
            "[Interface]",
            "# hivemind-tui server",
            f"PrivateKey = {await self._server_private()}",
            f"Address = {address}",
            f"ListenPort = {server.listen_port}",
            f"MTU = {server.mtu}",
        ]
        for peer in await self.peers():
            lines += [
                "",
                "[Peer]",
                f"# {peer.name} ({peer.owner})",
                f"PublicKey = {peer.public_key}",
                f"PresharedKey = {peer.preshared_key}",
                f"AllowedIPs = {peer.allowed_ips}",
            ]
        return "\n".join(lines) + "\n"

    async def export(self, path: Path, text: str) -> None:
        await asyncio.to_thread(atomic_write, path, text.encode(), 0o600)

    # -- apply and status -------------------------------------------------------------------------
    def apply_commands(self, conf: Path, interface: str) -> list[str]:
        return [
            f"wg-quick strip {conf} > {conf.with_suffix('.stripped')}",
            f"wg syncconf {interface} {conf.with_suffix('.stripped')}",
        ]

    async def apply(self, dry_run: bool) -> tuple[Path, list[str], bool]:
        """Write `vpn/IFACE.conf`; load it into a running interface when wg is there and we are root."""
        server = await self.server()
        conf = self.dir / f"{server.interface}.conf"  # wg-quick strip only takes IFACE.conf
        await self.export(conf, await self.server_config())
        commands = self.apply_commands(conf, server.interface)
        if dry_run:
            return conf, commands, False
        for tool in ("wg", "wg-quick"):
            if shutil.which(tool) is None:
                raise VpnError(
                    f"`{tool}` is not installed (Debian: apt-get install wireguard-tools); the config "
                    f"is written to {conf}",
                    code="WG_MISSING",
                )
        if os.geteuid() != 0:
            raise VpnError(
                f"loading the config needs root; run `sudo hivemind-tui vpn apply` (written: {conf})", code="NOT_ROOT"
            )
        if not await asyncio.to_thread(Path(f"/sys/class/net/{server.interface}").exists):
            raise VpnError(
                f"interface {server.interface} is not up; bring it up first (`wg-quick up {conf}`)", code="NO_INTERFACE"
            )
        await asyncio.to_thread(self._sync, conf, server.interface)
        return conf, commands, True

    def _sync(self, conf: Path, interface: str) -> None:
        stripped = subprocess.run(["wg-quick", "strip", str(conf)], capture_output=True, text=True, check=False)
        if stripped.returncode != 0:
            raise VpnError(f"wg-quick strip failed: {stripped.stderr.strip()[:300]}", code="WG_FAILED")
        fd, tmp = tempfile.mkstemp(prefix=".sync-", dir=self.dir)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(stripped.stdout)
            done = subprocess.run(["wg", "syncconf", interface, tmp], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise VpnError(f"wg syncconf failed: {done.stderr.strip()[:300]}", code="WG_FAILED")
        finally:
            Path(tmp).unlink(missing_ok=True)

    async def status(self) -> dict[str, PeerStatus] | None:
        """Per public key: handshake, transfer, endpoint, from `wg show IFACE dump`; None without wg."""
        server = await self.server()
        if shutil.which("wg") is None:
            return None
        proc = await asyncio.to_thread(
            subprocess.run, ["wg", "show", server.interface, "dump"], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            return {}
        return parse_dump(proc.stdout)


def parse_dump(text: str) -> dict[str, PeerStatus]:
    peers = {}
    for line in text.strip().splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) < 8:
            continue
        handshake = int(parts[4]) if parts[4].isdigit() and int(parts[4]) > 0 else None
        peers[parts[0]] = PeerStatus(
            parts[0],
            None if parts[2] == "(none)" else parts[2],
            float(handshake) if handshake else None,
            int(parts[5]),
            int(parts[6]),
        )
    return peers
