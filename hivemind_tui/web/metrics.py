"""Prometheus metrics from the one shared snapshot the HTTP face refreshes: a scrape never calls the pool."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from hivemind_tui.services.monitor import ClusterSnapshot

TASK_STATUSES = ("PENDING", "ASSIGNED", "RUNNING", "COMPLETED", "FAILED", "STOPPED")
# Seconds: from a second to a day, the spread of waits and runs on a cluster.
BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0)


def histogram(name: str, documentation: str, values: list[float]) -> HistogramMetricFamily:
    """Over the tasks the pool lists now (they stay listed for retention_days), not a running count."""
    counts = [sum(v <= bound for v in values) for bound in BUCKETS]
    buckets = [(f"{bound:g}", float(count)) for bound, count in zip(BUCKETS, counts, strict=True)]
    buckets.append(("+Inf", float(len(values))))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=sum(values))


class SnapshotCollector(Collector):
    def __init__(self, snapshot: Callable[[], ClusterSnapshot | None]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        up = GaugeMetricFamily("hivemind_pool_up", "1 while the Node Pool answers, 0 when it does not")
        up.add_metric([], 1.0 if snap is not None and snap.health is not None else 0.0)
        yield up
        if snap is None:
            return
        if snap.health is not None:
            latency = GaugeMetricFamily(
                "hivemind_pool_rpc_latency_seconds", "round trip of the last health rpc to the Node Pool"
            )
            latency.add_metric([], snap.health.latency_ms / 1000)
            yield latency
        tasks = GaugeMetricFamily("hivemind_tasks", "tasks the pool lists, by status", labels=["status"])
        counts = snap.task_counts
        for status in sorted(set(TASK_STATUSES) | set(counts)):
            tasks.add_metric([status], float(counts.get(status, 0)))
        yield tasks
        waits = [t.started_at - t.created_at for t in snap.tasks if t.started_at and t.created_at]
        runs = [t.finished_at - t.started_at for t in snap.tasks if t.finished_at and t.started_at]
        yield histogram("hivemind_task_wait_seconds", "from submit to a worker starting the task", waits)
        yield histogram("hivemind_task_run_seconds", "from a worker starting the task to its end", runs)
        alerts = GaugeMetricFamily("hivemind_alerts_active", "alerts raised and not yet cleared")
        alerts.add_metric([], float(len(snap.active_alerts)))
        yield alerts
        if snap.nodes is None or not snap.nodes.supported:
            return
        states = GaugeMetricFamily("hivemind_nodes", "worker nodes, by state", labels=["state"])
        tally = {"online": 0, "offline": 0, "cordoned": 0, "draining": 0}
        cpu = GaugeMetricFamily("hivemind_node_cpu_ratio", "CPU use of a node, 0 to 1", labels=["node"])
        memory = GaugeMetricFamily("hivemind_node_memory_ratio", "memory use of a node, 0 to 1", labels=["node"])
        for node in snap.nodes.nodes:
            tally["online" if node.online else "offline"] += 1
            if node.state in ("cordoned", "draining"):
                tally[node.state] += 1
            if node.online:
                cpu.add_metric([node.node_id], node.cpu_usage / 100)
                memory.add_metric([node.node_id], node.memory_usage / 100)
        for state, count in tally.items():
            states.add_metric([state], float(count))
        yield from (states, cpu, memory)


def registry_for(snapshot: Callable[[], ClusterSnapshot | None]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(SnapshotCollector(snapshot))
    return registry
