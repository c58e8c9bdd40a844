"""The dashboard: cluster cards, trends for the last hour, alerts, and this host's own figures."""

from __future__ import annotations

from collections import Counter

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Sparkline, Static

from hivemind_tui.services.models import KNOWN_STATUSES
from hivemind_tui.services.monitor import ClusterSnapshot
from hivemind_tui.ui.format import age, bar, plain, rate, series, size
from hivemind_tui.ui.screens.base import Section
from hivemind_tui.ui.snapshot_work import snapshot_work

BUSIEST = 6
TREND_WINDOW = 3600.0
TREND_STEP = 30.0
"""Seconds a point of the trends covers: 120 points an hour, more than a chart's cells, whatever the refresh."""


class DashboardScreen(Section):
    BINDINGS = [
        Binding("t", "app.section('tasks')", "Tasks"),
        Binding("n", "app.section('nodes')", "Nodes"),
        Binding("v", "app.section('vpn')", "VPN"),
        Binding("u", "app.upload", "Upload"),
        Binding("r", "app.refresh", "Refresh"),
        Binding("p", "app.pause", "Pause"),
        Binding("q", "app.quit", "Quit"),
    ]

    CSS_PATH = "dashboard.tcss"

    def body(self) -> ComposeResult:
        with Grid(id="cards"):
            yield Static(id="card-nodes", classes="card")
            yield Static(id="card-tasks", classes="card")
            yield Static(id="card-balance", classes="card")
            yield Static(id="card-latency", classes="card")
        with Horizontal(id="middle"):
            with Vertical(id="trends"):
                yield Static("Cluster CPU, last hour", classes="title", id="cpu-title")
                yield Sparkline([], id="cpu-trend")
                yield Static(f"Tasks finished per {TREND_STEP:.0f} s", classes="title", id="done-title")
                yield Sparkline([], id="done-trend")
            with Vertical(id="side"):
                yield Static(id="alerts")
                yield Static(id="busiest")
        yield Static(id="host")

    @snapshot_work(group="task-counts", description="count tasks")
    async def count_tasks(self, snap: ClusterSnapshot) -> None:
        """Tasks counted as the tasks screen lists them: parents and plain tasks, subtasks beside them."""
        rows = await self.hive.backend.task_rows(snap.tasks)
        counts = Counter(r.status for r in rows)
        order = [s for s in KNOWN_STATUSES if s in counts] + sorted(s for s in counts if s not in KNOWN_STATUSES)
        cells = [f"{plain(s.lower()[:4])} [b]{counts[s]}[/b]" for s in order]
        tasks = "\n".join("  ".join(cells[i : i + 2]) for i in range(0, len(cells), 2)) or "[dim]none[/]"
        subtasks = sum(1 for t in snap.tasks if t.parent_task_id)
        beside = f" [dim]· {subtasks} sub[/]" if subtasks else ""
        self.set_text("#card-tasks", f"[b]Tasks[/]{beside}\n{tasks}")

    def show(self, snap: ClusterSnapshot) -> None:
        now = self.hive.backend.clock()
        nodes = snap.nodes
        if nodes is None:
            node_text = "-"
        elif not nodes.supported:
            node_text = "[dim]not listed by\nthis pool[/]"
        else:
            node_text = f"[b]{snap.nodes_online}[/] online\nof {len(nodes.nodes)}"
        self.set_text("#card-nodes", f"[b]Nodes[/]\n{node_text}")
        self.count_tasks(snap)
        balance = "-" if snap.balance is None else f"[b]{snap.balance:,}[/] CPT"
        self.set_text("#card-balance", f"[b]Balance[/]\n{balance}")
        health = snap.health
        latency = f"[b]{health.latency_ms:.1f}[/] ms\n{plain(health.version)}" if health else "[red]unreachable[/]"
        self.set_text("#card-latency", f"[b]Pool[/]\n{latency}")
        alerts = snap.active_alerts
        lines = [f"[b]Alerts ({len(alerts)})[/]"] + [
            f"[yellow]▲[/] {plain(a.message)} [dim]{age(a.raised_at, now)}[/]" for a in alerts[:8]
        ]
        if not alerts:
            lines.append("[green]none[/]")
        self.set_text("#alerts", "\n".join(lines))
        self._busiest(snap)
        self._host(snap)
        self.load_trends()

    def _busiest(self, snap: ClusterSnapshot) -> None:
        """The nodes working hardest, as bars: where to look first when the cluster is slow."""
        online = [n for n in snap.nodes.nodes if n.online] if snap.nodes and snap.nodes.supported else []
        top = sorted(online, key=lambda n: (n.cpu_usage, n.memory_usage), reverse=True)[:BUSIEST]
        lines = ["[b]Busiest nodes[/]  [dim]CPU · memory[/]"] + [
            f"{plain(n.node_id[:16]):<16} {bar(n.cpu_usage, 8)} {n.cpu_usage:3.0f}%  {bar(n.memory_usage, 8)} "
            f"{n.memory_usage:3.0f}%"
            for n in top
        ]
        self.set_text("#busiest", "\n".join(lines) if top else "[b]Busiest nodes[/]  [dim]none[/]")

    def _host(self, snap: ClusterSnapshot) -> None:
        """Figures in columns of fixed width: a rate that grows a digit neither shifts its line nor, wrapped
        in a narrow terminal, changes the panel's height (which lays the screen out)."""
        h = snap.host
        if h is None:
            self.set_text("#host", "[dim]this host: no figures[/]")
            return
        cores = "  ".join(f"{i}:{bar(p, 6)}{p:3.0f}%" for i, p in enumerate(h.per_core[:8]))
        disk = h.disks[0] if h.disks else None
        lines = [
            f"[b]This host[/]  CPU {bar(h.cpu_percent, 12)} {h.cpu_percent:3.0f}%   load "
            + " ".join(f"{x:.2f}" for x in h.load),
            f"cores  {cores}",
            f"memory {bar(h.memory_percent, 12)} {h.memory_percent:3.0f}% of {size(h.memory_total_bytes)}   "
            f"swap {h.swap_percent:.0f}%",
            (f"disk   {bar(disk.percent, 12)} {disk.percent:3.0f}% {plain(disk.mount)}" if disk else "disk   -")
            + f"   io r {rate(h.disk_read_rate):>10} w {rate(h.disk_write_rate):>10}",
            f"net    ↑ {rate(h.net_sent_rate):>10}  ↓ {rate(h.net_recv_rate):>10}   console CPU "
            f"{h.process_cpu_percent:5.1f}%  RSS {size(h.process_rss_bytes):>8}",
        ]
        self.set_text("#host", "\n".join(lines))

    @work(exclusive=True, group="trends", exit_on_error=False)
    async def load_trends(self) -> None:
        backend = self.hive.backend
        trends = await backend.trends(backend.clock() - TREND_WINDOW, TREND_STEP)
        self.query_one("#cpu-trend", Sparkline).data = series(trends.cluster_cpu)
        self.query_one("#done-trend", Sparkline).data = series(trends.finished)
        # The bars have no axis: their range and span are said in the titles.
        span = f"{TREND_WINDOW / 60:.0f} min"
        cpu, done = trends.cluster_cpu, trends.finished
        cpu_range = f"{min(cpu):.0f}-{max(cpu):.0f}%" if cpu else "no samples yet"
        self.set_text("#cpu-title", f"Cluster CPU · {span} · {cpu_range}")
        done_range = f"max {max(done):.0f}" if done else "no samples yet"
        self.set_text("#done-title", f"Done per {TREND_STEP:.0f} s · {span} · {done_range}")
