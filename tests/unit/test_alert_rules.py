"""docs/prometheus/alerts.yml: valid for promtool, and every hivemind_ metric it names is one /metrics serves."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from prometheus_client import generate_latest

from hivemind_tui.services.models import ConnectionState, NodeInfo, NodeList, PoolHealth, TaskInfo
from hivemind_tui.services.monitor import ClusterSnapshot
from hivemind_tui.web.metrics import registry_for
from tests.system import require_tools

RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus" / "alerts.yml"


def served_metrics() -> str:
    snap = ClusterSnapshot(
        1_800_000_000.0,
        "127.0.0.1:50051",
        ConnectionState("connected"),
        health=PoolHealth("1.0", (), None, 2.5),
        nodes=NodeList(True, [NodeInfo("n1", online=True, cpu_usage=50.0, memory_usage=25.0), NodeInfo("n2")]),
        tasks=[
            TaskInfo("a", "RUNNING", created_at=100.0, started_at=103.0),
            TaskInfo("b", "FAILED", created_at=100.0, started_at=110.0, finished_at=170.0),
            TaskInfo("c", "FAILED"),
        ],
    )
    return generate_latest(registry_for(lambda: snap)).decode()


def test_promtool_accepts_the_rules() -> None:
    require_tools("promtool")
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_name_only_served_metrics() -> None:
    text = served_metrics()
    named = set(re.findall(r"\b(hivemind_[a-z_]+)", RULES.read_text()))
    assert named and all(re.search(rf"^{name}[{{ ]", text, re.M) for name in named), (named, text)
    assert 'hivemind_tasks{status="FAILED"} 2.0' in text and 'hivemind_nodes{state="offline"} 1.0' in text
    assert 'hivemind_node_cpu_ratio{node="n1"} 0.5' in text and "hivemind_pool_up 1.0" in text
    assert "hivemind_pool_rpc_latency_seconds 0.0025" in text
    # waits 3 s and 10 s; one run of 60 s
    assert 'hivemind_task_wait_seconds_bucket{le="5"} 1.0' in text and "hivemind_task_wait_seconds_sum 13.0" in text
    assert 'hivemind_task_run_seconds_bucket{le="15"} 0.0' in text
    assert 'hivemind_task_run_seconds_bucket{le="60"} 1.0' in text and "hivemind_task_run_seconds_count 1.0" in text


def test_without_a_snapshot_the_pool_is_down() -> None:
    assert "hivemind_pool_up 0.0" in generate_latest(registry_for(lambda: None)).decode()
