"""A refresh converts every changed node and task; what repeats across them is one string, not a copy each."""

from __future__ import annotations

from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.services.nodepool_client import node_from_pb, task_from_pb


def test_a_nodes_repeated_words_are_one_string_across_nodes() -> None:
    """Each read of a message's string field makes a new string: 1,000 nodes held 1,000 copies of "Idle", of
    their state, location and GPU name, twice while a refresh replaced the list."""
    made = [
        node_from_pb(
            pb.NodeInfo(
                node_id=f"n{i}",
                hostname=f"host-{i}",
                status="Idle",
                state="cordoned",
                location="rack-7",
                gpu_name="RTX 4090",
                docker_status="available",
                isolation="bwrap",
            )
        )
        for i in range(2)
    ]
    for field in ("status", "state", "location", "gpu_name", "docker_status", "isolation", "gpu_usage"):
        assert getattr(made[0], field) is getattr(made[1], field), field
    assert made[0].hostname == "host-0" and made[0].status == "Idle" and made[0].state == "cordoned"


def test_a_tasks_repeated_words_are_one_string_across_tasks() -> None:
    made = [
        task_from_pb(
            pb.TaskInfo(task_id=f"t{i}", status="COMPLETED", message="completed", owner="alice", worker_ip="w-1")
        )
        for i in range(2)
    ]
    for field in ("status", "message", "owner", "worker", "cpu_usage", "gpu_memory_usage"):
        assert getattr(made[0], field) is getattr(made[1], field), field
