"""One node: its figures, CPU / memory / GPU history for the last hour from the store, its running tasks."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Sparkline, Static

from hivemind_tui.services.monitor import ClusterSnapshot
from hivemind_tui.ui.format import age, plain, series
from hivemind_tui.ui.hive import hive_of, watch_app
from hivemind_tui.ui.widgets.footer import ConsoleFooter
from hivemind_tui.ui.widgets.header import ConsoleHeader, OutageBanner
from hivemind_tui.ui.worker_errors import ReportsWorkerErrors

WINDOW = 3600.0


class NodeDetailScreen(ReportsWorkerErrors, Screen[None]):
    CSS_PATH = "node_detail.tcss"
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("y", "copy_id", "Copy id")]

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def compose(self) -> ComposeResult:
        yield ConsoleHeader()
        yield OutageBanner(id="banner")
        yield Static("", id="node-facts")
        with Vertical(id="charts"):
            for key, title in (("cpu", "CPU %"), ("memory", "Memory %"), ("gpu", "GPU %")):
                yield Static(title, classes="chart-title", id=f"{key}-title")
                yield Sparkline([], id=f"{key}-chart")
        yield Static("", id="node-tasks")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        watch_app(self, "snapshot", self.show, init=True)
        self.load_history()

    def show(self, snap: ClusterSnapshot | None) -> None:
        if snap is None or snap.nodes is None:
            return
        node = next((n for n in snap.nodes.nodes if n.node_id == self.node_id), None)
        facts = self.query_one("#node-facts", Static)
        if node is None:
            facts.update(f"[b]{plain(self.node_id)}[/]: no longer listed by the pool")
            return
        now = hive_of(self).backend.clock()
        online = "[green]online[/]" if node.online else "[red]offline[/]"
        gpu = f"{plain(node.gpu_name)} {node.gpu_memory_gb} GB" if node.gpu_name else "n/a"
        facts.update(
            f"[b]{plain(node.node_id)}[/]  {online}  state {plain(node.state)}  status {plain(node.status)}  heartbeat "
            f"{age(node.last_heartbeat, now)} ago\n"
            f"host {plain(node.hostname)}:{node.port}  {node.cpu_cores} cores  {node.memory_gb} GB  cpu score "
            f"{node.cpu_score}  GPU {gpu}  location {plain(node.location or '-')}\n"
            + (f"tasks confined by: {plain(node.isolation)}\n" if node.isolation else "")
            + f"now: CPU {node.cpu_usage:.0f}%  memory {node.memory_usage:.0f}%  GPU {node.gpu_usage:.0f}%  "
            f"tasks {node.running_tasks}/{node.slots}"
        )
        running = [t for t in snap.tasks if t.worker == self.node_id and t.status in ("ASSIGNED", "RUNNING")]
        lines = [f"[b]Running tasks ({len(running)})[/]"] + [
            f"  {plain(t.task_id)}  {plain(t.status)}  {plain(t.owner)}" for t in running
        ]
        self.query_one("#node-tasks", Static).update("\n".join(lines) if running else "[b]Running tasks[/]: none")

    @work(exclusive=True, group="node-history", exit_on_error=False)
    async def load_history(self) -> None:
        backend = hive_of(self).backend
        points = await backend.node_history(self.node_id, backend.clock() - WINDOW)
        for key in ("cpu", "memory", "gpu"):
            values = [getattr(p, key) for p in points]
            self.query_one(f"#{key}-chart", Sparkline).data = series(values)
            summary = (
                f"  now {values[-1]:.0f}  max {max(values):.0f}  ({len(values)} samples)"
                if values
                else "  no history yet (kept while a console or `watch` runs)"
            )
            title = {"cpu": "CPU %", "memory": "Memory %", "gpu": "GPU %"}[key]
            self.query_one(f"#{key}-title", Static).update(title + summary)

    def action_copy_id(self) -> None:
        hive_of(self).copy(self.node_id, "the node id")
