"""A refresh converts every changed node and task; what repeats across them is one string, not a copy each."""

from __future__ import annotations

import tracemalloc

from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.services.nodepool_client import node_from_pb, task_from_pb, tasks_from_pb


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


def test_a_list_of_known_tasks_keeps_their_objects_without_a_second_copy_at_any_moment() -> None:
    """The monitor lists every task now and then; an unchanged task's new object was kept beside the known one
    until the whole list was compared, a peak of every task made twice (640 KB with the soak's 1,800 tasks, and
    growing with history) that the allocators kept after it was freed. Each new object now goes at once."""
    reply = pb.GetAllTasksResponse()
    for i in range(2_000):
        reply.tasks.add(task_id=f"t{i}", status="COMPLETED", owner="alice", created_at=1.7e9 + i, updated_at=1.8e9)
    known = {t.task_id: t for t in tasks_from_pb(reply.tasks)}
    reply.tasks[7].status = "FAILED"
    tracemalloc.start()
    try:
        listed = tasks_from_pb(reply.tasks, known)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert listed[7].status == "FAILED" and listed[7] is not known["t7"]
    assert all(task is known[task.task_id] for task in listed if task.task_id != "t7")
    # The list itself is 16 KB; 2,000 tasks made again were ~700 KB.
    assert peak < 64_000, peak
