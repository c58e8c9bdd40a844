"""VPN: the server identity, the peers with handshake status, and (admins) add, show, rekey, revoke, apply.

Keys: `a` add a peer, enter shows a peer's config and QR (keys kept only; `s` there shows the QR alone), `k`
rekeys, `x` revokes (after a confirmation), `c` shows and exports the server config, `A` applies it (a dry run
first), `y` copies.
Others see their own peers, and why the actions are disabled.
"""

from __future__ import annotations

import ipaddress

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from hivemind_tui.core import qr
from hivemind_tui.core.errors import HivemindError
from hivemind_tui.services.monitor import ClusterSnapshot
from hivemind_tui.services.wireguard import NewPeer, Peer, PeerStatus, check_name, parse_networks
from hivemind_tui.ui.format import age, plain, when
from hivemind_tui.ui.screens.base import Section
from hivemind_tui.ui.screens.confirm import ConfirmScreen, on_yes
from hivemind_tui.ui.screens.text_view import TextViewScreen
from hivemind_tui.ui.widgets.toggle import Toggle
from hivemind_tui.ui.widgets.virtual_table import Column, VirtualTable

COLUMNS = [
    Column("name", "PEER", 18),
    Column("address", "ADDRESS", 12),
    Column("owner", "OWNER", 10),
    Column("mode", "MODE", 5),
    Column("created", "CREATED", 16),
    Column("handshake", "HANDSHAKE", 14),
]


class AddPeerScreen(ModalScreen[tuple[str, tuple[str, ...], bool] | None]):
    CSS_PATH = "vpn.tcss"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="add-box"):
            yield Static("[b]Add a VPN peer[/]")
            yield Label("Name (shown in configs; no newlines)")
            yield Input(id="peer-name", placeholder="laptop-alice")
            yield Label("Split tunnel: networks besides the VPN subnet (empty: full tunnel, all traffic)")
            yield Input(id="peer-nets", placeholder="192.168.10.0/24, 10.20.0.0/16")
            yield Toggle("Keep the private key (0600) so the config can be shown again", id="peer-keep")
            yield Static("", id="peer-error")
            with Horizontal():
                yield Button("Add", id="peer-add", variant="primary")
                yield Button("Cancel", id="peer-cancel")

    def on_mount(self) -> None:
        self.query_one("#peer-name", Input).focus()

    @on(Button.Pressed, "#peer-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#peer-add")
    @on(Input.Submitted)
    def _add(self) -> None:
        error = self.query_one("#peer-error", Static)
        name = self.query_one("#peer-name", Input).value
        nets_text = self.query_one("#peer-nets", Input).value.strip()
        try:
            check_name(name)
            networks = parse_networks(nets_text) if nets_text else ()
        except HivemindError as exc:
            error.update(f"[b red]{plain(exc.message)}[/]")
            return
        self.dismiss((name, networks, self.query_one("#peer-keep", Toggle).value))


class VpnScreen(Section):
    CSS_PATH = "vpn.tcss"
    BINDINGS = [
        Binding("a", "add", "Add"),
        Binding("k", "rekey", "Rekey"),
        Binding("x", "revoke", "Revoke"),
        Binding("c", "server_config", "Server"),
        Binding("A", "apply", "Apply", key_display="A"),
        Binding("y", "copy_key", "Copy"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def body(self) -> ComposeResult:
        yield Static("", id="vpn-server")
        yield Input(placeholder="filter peers: name, owner, address or mode", id="vpn-filter")
        yield Static(" " + " ".join(c.label.ljust(c.width) for c in COLUMNS), id="vpn-header")
        yield VirtualTable[Peer](COLUMNS, lambda p: p.name, self._cells, id="vpn-peers")
        yield Static("", id="vpn-status")

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[str, PeerStatus] | None = None

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#vpn-filter", Input).display = False
        self.peers_table.focus()
        self.load()

    def action_filter(self) -> None:
        field = self.query_one("#vpn-filter", Input)
        field.display = True
        field.focus()

    @on(Input.Changed, "#vpn-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        needle = event.value.strip().lower()
        self.peers_table.set_filter(
            (lambda p: needle in f"{p.name} {p.owner} {p.address} {p.mode}".lower()) if needle else None
        )

    @on(Input.Submitted, "#vpn-filter")
    def _filter_done(self) -> None:
        self.peers_table.focus()

    def action_clear_filter(self) -> None:
        field = self.query_one("#vpn-filter", Input)
        field.value, field.display = "", False
        self.peers_table.set_filter(None)
        self.peers_table.focus()

    @property
    def peers_table(self) -> VirtualTable[Peer]:
        return self.query_one("#vpn-peers", VirtualTable)

    def _cells(self, peer: Peer) -> tuple[object, ...]:
        status = self._live.get(peer.public_key) if self._live else None
        if self._live is None:
            handshake = "n/a (no wg)"
        elif status is None or status.latest_handshake is None:
            handshake = "never"
        else:
            now = self.hive.backend.clock()
            handshake = ("● " if status.connected(now) else "○ ") + age(status.latest_handshake, now) + " ago"
        return (peer.name, peer.address, peer.owner, peer.mode, when(peer.created_at), handshake)

    def show(self, snap: ClusterSnapshot) -> None:
        self.load()

    @work(exclusive=True, group="vpn", exit_on_error=False)
    async def load(self) -> None:
        backend = self.hive.backend
        server = await backend.vpn_server()
        box = self.query_one("#vpn-server", Static)
        why = "" if self._may_change(quiet=True) else " · only admins change the VPN; actions are disabled"
        if server is None:
            self.query_one("#vpn-status", Static).update(f"no peers{why}")
            box.update(
                "No VPN server yet. On the master host run [b]hivemind-tui vpn init[/] (set vpn_endpoint, "
                "VPN_SERVER_IP, to the address clients dial)."
            )
            return
        peers, live = await backend.vpn_peers()
        self._live = live
        pool = ipaddress.ip_network(server.pool)
        free = pool.num_addresses - 3 - len(peers)
        box.update(
            f"[b]{plain(server.interface)}[/]  endpoint {plain(server.endpoint) or '[red]not set[/]'}:"
            f"{server.listen_port}  address {server.address}  pool {server.pool} ({free} free)\n"
            f"public key {server.public_key}"
        )
        self.peers_table.replace_rows(peers)
        mine = "" if backend.role == "admin" else f" (yours, {plain(backend.username)})"
        self.query_one("#vpn-status", Static).update(f"{len(peers)} peer(s){mine}{why}")

    def _may_change(self, quiet: bool = False) -> bool:
        backend = self.hive.backend
        # The VPN is this host's own, not the pool's: on a pool without roles (HiveMind) whoever runs the
        # console here may change it, as the `vpn` commands need no pool login.
        ok = (backend.role == "admin" or not backend.pool_has_roles) and not backend.settings.readonly
        if not ok and not quiet:
            self.notify(f"only admins change the VPN (you are {backend.role or 'not logged in'})", severity="warning")
        return ok

    def _current(self) -> Peer | None:
        key = self.peers_table.cursor_key
        return self.peers_table.row(key) if key is not None else None

    # -- actions ----------------------------------------------------------------------------------
    def action_add(self) -> None:
        if self._may_change():
            self.app.push_screen(AddPeerScreen(), self._added)

    def _added(self, spec: tuple[str, tuple[str, ...], bool] | None) -> None:
        if spec is not None:
            self.add(*spec)

    @work(group="vpn-change", exit_on_error=False, description="add")
    async def add(self, name: str, networks: tuple[str, ...], keep: bool) -> None:
        try:
            made = await self.hive.backend.vpn_add(name, networks, keep)
        except HivemindError as exc:
            self.notify(exc.message, severity="error")
            return
        self._show_new(made, "added")
        self.load()

    def _show_new(self, made: NewPeer, what: str) -> None:
        note = "" if made.peer.key_kept else "\n(the private key is not kept: export or scan it now)\n"
        self.app.push_screen(
            TextViewScreen(
                f"Peer {made.peer.name} {what}: config and QR",
                made.config + note + "\n" + qr.half_blocks(made.config).text,
                made.config,
                self.hive.backend.vpn_export,
                str(self.hive.backend.exports_dir / f"{made.peer.name}.conf"),
                qr_data=made.config,
            )
        )

    @on(VirtualTable.Selected, "#vpn-peers")
    def _show(self) -> None:
        peer = self._current()
        if peer is not None:
            self.show_config(peer)

    @work(group="vpn-show", exit_on_error=False, description="show config")
    async def show_config(self, peer: Peer) -> None:
        try:
            config = await self.hive.backend.vpn_config(peer.name)
        except HivemindError as exc:
            self.notify(exc.message, severity="warning", timeout=8)
            return
        self.app.push_screen(
            TextViewScreen(
                f"Peer {peer.name}: config and QR",
                config + "\n" + qr.half_blocks(config).text,
                config,
                self.hive.backend.vpn_export,
                str(self.hive.backend.exports_dir / f"{peer.name}.conf"),
                qr_data=config,
            )
        )

    def action_rekey(self) -> None:
        peer = self._current()
        if peer is not None and self._may_change():
            self.app.push_screen(
                ConfirmScreen(
                    f"Rekey {peer.name}? Its current config stops working.",
                    [f"{peer.name} ({peer.address}, owner {peer.owner})"],
                ),
                on_yes(lambda: self.rekey(peer.name)),
            )

    @work(group="vpn-change", exit_on_error=False, description="rekey")
    async def rekey(self, name: str) -> None:
        try:
            made = await self.hive.backend.vpn_rekey(name)
        except HivemindError as exc:
            self.notify(exc.message, severity="error")
            return
        self._show_new(made, "rekeyed")
        self.load()

    def action_revoke(self) -> None:
        peer = self._current()
        if peer is not None and self._may_change():
            self.app.push_screen(
                ConfirmScreen(
                    f"Revoke {peer.name}? It loses access once applied.",
                    [f"{peer.name} ({peer.address}, owner {peer.owner})"],
                ),
                on_yes(lambda: self.revoke(peer.name)),
            )

    @work(group="vpn-change", exit_on_error=False, description="revoke")
    async def revoke(self, name: str) -> None:
        try:
            await self.hive.backend.vpn_revoke(name)
        except HivemindError as exc:
            self.notify(exc.message, severity="error")
            return
        self.notify(f"revoked {name}; apply (A) to load the change")
        self.load()

    def action_server_config(self) -> None:
        if self._may_change():
            self.server_config()

    @work(group="vpn-show", exit_on_error=False)
    async def server_config(self) -> None:
        try:
            text = await self.hive.backend.vpn_server_config()
        except HivemindError as exc:
            self.notify(exc.message, severity="error")
            return
        self.app.push_screen(
            TextViewScreen(
                "Server config (holds the server's private key)",
                text,
                text,
                self.hive.backend.vpn_export,
                str(self.hive.backend.exports_dir / "wg0.conf"),
            )
        )

    def action_apply(self) -> None:
        if self._may_change():
            self.apply(dry_run=True)

    @work(group="vpn-change", exit_on_error=False, description="apply")
    async def apply(self, dry_run: bool) -> None:
        try:
            conf, commands, loaded = await self.hive.backend.vpn_apply(dry_run)
        except HivemindError as exc:
            self.notify(exc.message, severity="error", timeout=10)
            return
        if dry_run:
            self.app.push_screen(
                ConfirmScreen(f"Apply {conf}? These commands will run:", commands),
                on_yes(lambda: self.apply(dry_run=False)),
            )
        elif loaded:
            self.notify("the server config is loaded into the interface")

    def action_copy_key(self) -> None:
        peer = self._current()
        if peer is not None:
            self.hive.copy(peer.public_key, f"the public key of {peer.name}")
