"""`vpn ...`: WireGuard peers on the local data dir. Whoever can write the data dir acts as its admin
(as `wg` acts for root); no pool login is needed."""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from hivemind_tui.commands.base import CommandRegistry, Context, Result
from hivemind_tui.commands.common import table, when
from hivemind_tui.commands.pool_cmd import new_join_token
from hivemind_tui.core import qr
from hivemind_tui.core.datadir import atomic_write
from hivemind_tui.core.errors import ExitCode, NotPermittedError, UsageError
from hivemind_tui.core.poolfile import running_pool
from hivemind_tui.services.audit import AuditLog
from hivemind_tui.services.store import Store
from hivemind_tui.services.wireguard import NewPeer, Peer, WireGuard, parse_networks


def register(registry: CommandRegistry) -> None:
    vpn = registry.group("vpn", "WireGuard peers, configs and the server (acts on the local data dir)")
    vpn.command("init", init, "create the server identity (key pair, address pool)")
    add_cmd = vpn.command("add", add, "add a peer and print its client config (its private key is shown once)")
    add_cmd.add_argument("name")
    add_cmd.add_argument("--split", metavar="NET,...", help="split tunnel: the VPN subnet plus these networks")
    add_cmd.add_argument("--owner", default=None, help="who the peer belongs to (default: you)")
    add_cmd.add_argument("--output", type=Path, help="write the client config here (0600) instead of stdout")
    add_cmd.add_argument("--qr", action="store_true", help="also draw a QR code of the config")
    add_cmd.add_argument("--qr-file", type=Path, help="also write the QR code as .svg or .png (0600)")
    add_cmd.add_argument("--keep-private-key", action="store_true", help="keep the key (0600) to show it again")
    add_cmd.add_argument(
        "--worker",
        action="store_true",
        help="a worker host: the VPN subnet only, no DNS (for `wg-quick up`), and the `worker --join` command",
    )
    vpn.command("list", list_peers, "the peers (with handshake status where wg runs)").add_argument(
        "--all", action="store_true", help="also revoked peers"
    )
    show_cmd = vpn.command("show", show, "a peer; its full config if its key was kept")
    show_cmd.add_argument("name")
    show_cmd.add_argument("--qr", action="store_true")
    rekey_cmd = vpn.command("rekey", rekey, "issue a new key pair for a peer (the old config stops working)")
    rekey_cmd.add_argument("name")
    rekey_cmd.add_argument("--output", type=Path)
    vpn.command("revoke", revoke, "revoke a peer (its address is free again)").add_argument("name")
    server_cmd = vpn.command("server-config", server_config, "print or export the server config (has its key)")
    server_cmd.add_argument("--output", type=Path)
    vpn.command("apply", apply, "write the server config and load it into the running interface").add_argument(
        "--dry-run", action="store_true", help="print the commands instead of running them"
    )
    vpn.command("status", status, "handshakes and transfer per peer from `wg show`")


@asynccontextmanager
async def wireguard(ctx: Context) -> AsyncIterator[tuple[WireGuard, AuditLog]]:
    async with Store(ctx.data_dir.console_db, ctx.settings.db_busy_timeout) as store:
        yield WireGuard(ctx.settings, ctx.data_dir.vpn, store), AuditLog(store)


def _writer(ctx: Context, what: str) -> str:
    if ctx.settings.readonly:
        raise NotPermittedError(f"read-only: {what} changes the VPN")
    return getpass.getuser()


def peer_json(peer: Peer, handshake: float | None = None, connected: bool | None = None) -> dict[str, object]:
    return {
        "name": peer.name,
        "address": peer.address,
        "address6": peer.address6 or None,
        "public_key": peer.public_key,
        "owner": peer.owner,
        "mode": peer.mode,
        "networks": list(peer.networks),
        "created_at": peer.created_at,
        "revoked": peer.revoked,
        "revoked_at": peer.revoked_at,
        "key_kept": peer.key_kept,
        "handshake_at": handshake,
        "connected": connected,
    }


async def init(ctx: Context) -> Result:
    actor = _writer(ctx, "init")
    async with wireguard(ctx) as (wg, audit):
        server = await wg.init()
        await audit.record(actor, "vpn_init", server.interface, server.public_key)
    return Result(
        {
            "public_key": server.public_key,
            "address": server.address,
            "pool": server.pool,
            "listen_port": server.listen_port,
            "endpoint": server.endpoint or None,
            "interface": server.interface,
        },
        f"VPN server {server.address} ({server.pool}), port {server.listen_port}, public key "
        f"{server.public_key}"
        + (
            ""
            if server.endpoint
            else "\nwarning: vpn_endpoint (VPN_SERVER_IP) is not set; client configs will have no Endpoint"
        ),
    )


async def _deliver(ctx: Context, made: NewPeer, output: Path | None, wg: WireGuard) -> tuple[dict[str, Any], str]:
    text_parts = []
    data: dict[str, object] = {"peer": peer_json(made.peer)}
    if output is not None:
        await wg.export(output, made.config)
        data["config_file"] = str(output)
        text_parts.append(f"client config written to {output} (0600)")
    else:
        data["config"] = made.config
        text_parts.append(made.config)
    if getattr(ctx.args, "qr", False):
        data["qr"] = qr.half_blocks(made.config).text
        text_parts.append(str(data["qr"]))
    qr_path = getattr(ctx.args, "qr_file", None)
    if qr_path is not None:
        kind = qr_path.suffix.lstrip(".").lower()
        if kind not in ("svg", "png"):
            raise UsageError("--qr-file must end in .svg or .png")
        await asyncio.to_thread(_write_private, qr_path, qr.image(made.config, kind))
        data["qr_file"] = str(qr_path)
    if not made.peer.key_kept:
        text_parts.append("(the private key is not kept: save this config now)")
    return data, "\n".join(text_parts)


def _write_private(path: Path, data: bytes) -> None:
    atomic_write(path, data, 0o600)


async def add(ctx: Context) -> Result:
    actor = _writer(ctx, "add")
    networks = parse_networks(ctx.args.split) if ctx.args.split is not None else ()
    if ctx.args.worker and networks:
        raise UsageError("--worker and --split exclude each other: a worker's tunnel carries the VPN subnet only")
    async with wireguard(ctx) as (wg, _):
        made = await wg.add(
            ctx.args.name,
            ctx.args.owner or actor,
            networks,
            ctx.args.keep_private_key,
            actor=actor,
            worker=ctx.args.worker,
        )
        data, text = await _deliver(ctx, made, ctx.args.output, wg)
        server = await wg.server()
    if ctx.args.worker:
        join = await _worker_join_command(ctx, server.address, made.peer.address)
        data["join_command"] = join
        text += f"\non the worker host, after `wg-quick up` with this config:\n  {join}"
    return Result(data, text)


async def _worker_join_command(ctx: Context, vpn_address: str, peer_address: str) -> str:
    """`worker --join` with a token for the pool at the VPN server's address (24 h; `pool join-token` makes
    more), listening on the peer's VPN address so that the pool reaches it through the tunnel. The pool's
    port: the running pool's, else the pool_listen setting's."""
    info = running_pool(ctx.data_dir.pool)
    port = (info.address if info else ctx.settings.pool_listen).rpartition(":")[2]
    token, _, _ = await new_join_token(ctx, [f"{vpn_address}:{port}"], 24 * 3600.0)
    return f"hivemind-tui worker --join {token} --listen {peer_address}:0"


async def list_peers(ctx: Context) -> Result:
    async with wireguard(ctx) as (wg, _):
        peers = await wg.peers(include_revoked=ctx.args.all)
        live = await wg.status() if peers else None
    now = time.time()
    rows, docs = [], []
    for p in peers:
        st = live.get(p.public_key) if live else None
        connected = None if live is None else bool(st and st.connected(now))
        docs.append(peer_json(p, st.latest_handshake if st else None, connected))
        rows.append(
            (
                p.name,
                p.address,
                p.owner,
                p.mode,
                when(p.created_at),
                "revoked" if p.revoked else ("-" if connected is None else "yes" if connected else "no"),
            )
        )
    text = table(("NAME", "ADDRESS", "OWNER", "MODE", "CREATED", "CONNECTED"), rows) if rows else "no peers"
    if live is None and peers:
        text += "\n(wg is not installed here: no handshake status)"
    return Result({"peers": docs}, text)


async def show(ctx: Context) -> Result:
    async with wireguard(ctx) as (wg, _):
        peer = await wg.peer(ctx.args.name)
        data: dict[str, object] = {"peer": peer_json(peer)}
        lines = [f"{k:<12} {v}" for k, v in peer_json(peer).items() if k not in ("handshake_at", "connected")]
        if peer.key_kept:
            config = await wg.kept_config(peer.name)
            data["config"] = config
            lines.append(config)
            if ctx.args.qr:
                data["qr"] = qr.half_blocks(config).text
                lines.append(str(data["qr"]))
        else:
            lines.append(f"(the private key was not kept: `vpn rekey {peer.name}` issues a new config)")
    return Result(data, "\n".join(lines))


async def rekey(ctx: Context) -> Result:
    actor = _writer(ctx, "rekey")
    async with wireguard(ctx) as (wg, _):
        made = await wg.rekey(ctx.args.name, actor=actor)
        data, text = await _deliver(ctx, made, ctx.args.output, wg)
    return Result(data, text)


async def revoke(ctx: Context) -> Result:
    actor = _writer(ctx, "revoke")
    async with wireguard(ctx) as (wg, _):
        peer = await wg.revoke(ctx.args.name, actor=actor)
    return Result(
        {"revoked": peer.name, "address": peer.address},
        f"revoked {peer.name} ({peer.address}); run `vpn apply` to load the change",
    )


async def server_config(ctx: Context) -> Result:
    async with wireguard(ctx) as (wg, _):
        config = await wg.server_config()
        if ctx.args.output is not None:
            await wg.export(ctx.args.output, config)
            return Result({"config_file": str(ctx.args.output)}, f"server config written to {ctx.args.output}")
    return Result({"config": config}, config)


async def apply(ctx: Context) -> Result:
    actor = _writer(ctx, "apply")
    async with wireguard(ctx) as (wg, audit):
        conf, commands, loaded = await wg.apply(ctx.args.dry_run)
        if loaded:
            await audit.record(actor, "vpn_apply", str(conf))
    text = f"server config written to {conf}\n" + ("\n".join(commands) if not loaded else "loaded into the interface")
    return Result(
        {"config_file": str(conf), "commands": commands, "loaded": loaded, "dry_run": ctx.args.dry_run},
        text,
        ExitCode.OK,
    )


async def status(ctx: Context) -> Result:
    async with wireguard(ctx) as (wg, _):
        peers = await wg.peers()
        live = await wg.status()
    if live is None:
        return Result(
            {"available": False, "peers": [peer_json(p) for p in peers]},
            "wg is not installed here (Debian: apt-get install wireguard-tools): no live status",
            ExitCode.FAILED,
        )
    now = time.time()
    docs, rows = [], []
    for p in peers:
        st = live.get(p.public_key)
        docs.append(
            {
                **peer_json(p, st.latest_handshake if st else None, bool(st and st.connected(now))),
                "endpoint": st.endpoint if st else None,
                "rx_bytes": st.rx_bytes if st else 0,
                "tx_bytes": st.tx_bytes if st else 0,
            }
        )
        rows.append(
            (
                p.name,
                p.address,
                st.endpoint if st and st.endpoint else "-",
                when(st.latest_handshake) if st and st.latest_handshake else "never",
                st.rx_bytes if st else 0,
                st.tx_bytes if st else 0,
            )
        )
    return Result(
        {"available": True, "peers": docs},
        table(("NAME", "ADDRESS", "ENDPOINT", "HANDSHAKE", "RX", "TX"), rows) if rows else "no peers",
    )
