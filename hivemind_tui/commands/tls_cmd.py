"""`tls ...`: the cluster's CA and certificates, without openssl.

`tls init` makes the CA, the pool's certificate and this host's client certificate in `DATA_DIR/tls/`;
the pool serves TLS from then on, and the CLI, the console and the local workers on this data dir trust it
by themselves. `tls issue NAME` makes a bundle (ca.pem, cert.pem, key.pem) for a console or a worker on
another host; `tls show` prints fingerprints and expiry.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from hivemind_tui.commands.base import CommandRegistry, Context, Result
from hivemind_tui.commands.common import table, when
from hivemind_tui.core import tls
from hivemind_tui.core.datadir import atomic_write, make_private_dir
from hivemind_tui.core.errors import ConfigError, UsageError
from hivemind_tui.core.tls_names import TlsPaths, worker_name
from hivemind_tui.core.tls_setup import tls_paths

SOON = 30 * 86400.0


def register(registry: CommandRegistry) -> None:
    group = registry.group("tls", "the cluster's CA and certificates (TLS between the pool, workers and consoles)")
    init = group.command("init", init_cmd, "make the CA, the pool's certificate and this host's client certificate")
    init.add_argument(
        "--host",
        action="append",
        default=None,
        metavar="NAME_OR_IP",
        help="a name or address the pool is reached at (repeat; default: this host's name, localhost, "
        "127.0.0.1, ::1 and the VPN server address)",
    )
    init.add_argument("--force", action="store_true", help="replace an existing CA (its certificates stop working)")
    issue = group.command("issue", issue_cmd, "make a certificate of the CA for a console or worker elsewhere")
    issue.add_argument("name", help="the certificate's name; for a worker, its node id")
    issue.add_argument("--host", action="append", default=[], metavar="NAME_OR_IP", help="more names it holds")
    issue.add_argument(
        "--output", type=Path, help="folder for ca.pem, cert.pem, key.pem (default: DATA_DIR/exports/tls-NAME)"
    )
    group.command("show", show_cmd, "fingerprints, names and expiry of the data dir's certificates")


async def init_cmd(ctx: Context) -> Result:
    paths = tls_paths(ctx.settings)
    hosts = ctx.args.host or tls.default_hosts(ctx.data_dir.vpn_server_address())
    await asyncio.to_thread(tls.init_ca, paths, hosts, ctx.args.force)
    ca = tls.info(paths.ca)
    overridden = [name for name in ("tls_cert", "tls_key", "tls_ca") if getattr(ctx.settings, name)]
    text = [
        f"CA made in {paths.root} (sha256 {ca.sha256})",
        f"the pool's certificate names: {', '.join(hosts)}",
        "the pool serves TLS from its next start; this data dir's CLI and console trust it by themselves",
    ]
    if overridden:
        text.append(f"note: your settings name other files ({', '.join(overridden)}); they still win")
    return Result(
        {"dir": str(paths.root), "ca_sha256": ca.sha256, "hosts": hosts, "overridden_by_settings": overridden},
        "\n".join(text),
    )


def _ca_files(paths: TlsPaths) -> tuple[bytes, bytes]:
    try:
        return paths.ca.read_bytes(), paths.ca_key.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no CA in {paths.root}: run `hivemind-tui tls init` first") from None


async def issue_cmd(ctx: Context) -> Result:
    name = ctx.args.name
    if not name or any(not c.isprintable() or c in "/\\" for c in name):
        raise UsageError("the name must be printable, without slashes")
    paths = tls_paths(ctx.settings)
    ca_pem, ca_key = await asyncio.to_thread(_ca_files, paths)
    cert, key = await asyncio.to_thread(tls.issue, ca_pem, ca_key, name, [name, worker_name(name), *ctx.args.host])
    out = ctx.args.output or ctx.data_dir.exports / f"tls-{name}"
    make_private_dir(out)
    atomic_write(out / "ca.pem", ca_pem, mode=0o644)
    atomic_write(out / "cert.pem", cert, mode=0o644)
    atomic_write(out / "key.pem", key, mode=0o600)
    return Result(
        {"name": name, "dir": str(out), "sha256": tls.fingerprint(cert)},
        f"certificate {name} in {out} (key 0600): on the other host set tls_ca = ca.pem, "
        "tls_client_cert = cert.pem, tls_client_key = key.pem",
    )


async def show_cmd(ctx: Context) -> Result:
    paths = tls_paths(ctx.settings)
    files = (
        sorted(p for p in paths.root.glob("*.pem") if not p.name.endswith("-key.pem")) if paths.root.is_dir() else []
    )
    if not files:
        return Result({"certificates": []}, f"no certificates in {paths.root} (run `hivemind-tui tls init`)")
    infos = await asyncio.to_thread(lambda: [tls.info(p) for p in files])
    now = time.time()
    rows = []
    data = []
    for item in infos:
        state = "EXPIRED" if item.not_after <= now else "expires soon" if item.not_after - now < SOON else "ok"
        rows.append([Path(item.path).name, item.subject, when(item.not_after), state, item.sha256[:16] + "…"])
        data.append(
            {
                "file": item.path,
                "subject": item.subject,
                "names": list(item.names),
                "sha256": item.sha256,
                "not_after": item.not_after,
                "is_ca": item.is_ca,
                "state": state,
            }
        )
    return Result({"certificates": data}, table(["FILE", "SUBJECT", "NOT AFTER", "STATE", "SHA256"], rows))
