"""A task cannot read the secrets of the pool or the console, and a busy pool runs every task once."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile

import pytest

from hivemind_tui.proto import nodepool_pb2 as pb
from tests.helpers import make_zip, task_zip
from tests.integration.cluster import Cluster
from tests.system import require_root

# Workers here have fixed node ids, and a worker empties its task folder when it starts: these tests
# share one xdist worker so that two of them never run a node of the same id at once.
pytestmark = pytest.mark.xdist_group("fixed-node-ids")

PROBE = """
import json, os

paths = json.load(open("paths.json"))
seen = {}
for path in paths:
    try:
        with open(path) as fh:
            seen[path] = "read:" + fh.read()[:4]
    except OSError as exc:
        seen[path] = type(exc).__name__
seen["uid"] = os.getuid()
os.makedirs("output", exist_ok=True)
json.dump(seen, open("output/seen.json", "w"))
"""


async def test_task_runs_unprivileged_and_cannot_read_secrets(cluster: Cluster) -> None:
    require_root()
    data = cluster.data_dir
    tokens = data / "tokens"
    tokens.mkdir(mode=0o700, exist_ok=True)
    (tokens / "127.0.0.1_1.json").write_text('{"token": "secret-token-value"}')
    (tokens / "127.0.0.1_1.json").chmod(0o600)
    paths = [
        str(data / "pool" / "worker-secret"),
        str(data / "pool" / "admin-password"),
        str(tokens / "127.0.0.1_1.json"),
        str(data / "pool" / "pool.db"),
    ]
    cluster.worker("w1")
    await cluster.wait_online("w1")
    await cluster.submit("probe", make_zip({"main.py": PROBE, "paths.json": json.dumps(paths)}))
    info = await cluster.wait("probe", {"COMPLETED", "FAILED"})
    assert info.status == "COMPLETED", info.message
    result = await cluster.pool.master.GetTaskResult(pb.GetTaskResultRequest(task_id="probe", token=cluster.token))
    with zipfile.ZipFile(io.BytesIO(result.result_zip)) as zf:
        seen = json.loads(zf.read("output/seen.json"))
    assert seen["uid"] != 0
    for path in paths:  # out of reach (the uid), or out of sight (bwrap's private /tmp)
        assert seen[path] in ("PermissionError", "FileNotFoundError"), (path, seen[path])


async def test_200_tasks_from_4_clients_complete_exactly_once(patient_cluster: Cluster) -> None:
    cluster = patient_cluster
    cluster.worker("w1", slots=4)
    cluster.worker("w2", slots=4)
    await cluster.wait_online("w1", "w2")
    tokens = [cluster.token] + [await cluster.pool.add_user(f"client{i}") for i in range(1, 4)]
    code = task_zip("import os\nprint('ran', os.environ['HIVEMIND_TASK_ID'])")

    async def client(index: int) -> list[str]:
        ids = [f"c{index}-t{n}" for n in range(50)]
        for task_id in ids:
            reply = await cluster.pool.master.UploadTask(
                pb.UploadTaskRequest(task_id=task_id, task_zip=code, token=tokens[index])
            )
            assert reply.success, reply.message
        return ids

    all_ids = [i for ids in await asyncio.gather(*(client(i) for i in range(4))) for i in ids]
    assert len(set(all_ids)) == 200
    for task_id in all_ids:
        info = await cluster.wait(task_id, {"COMPLETED", "FAILED"}, timeout=120)
        assert info.status == "COMPLETED", (task_id, info.message)
    rows = await cluster.pool.server.storage.fetchall("SELECT task_id, attempts, message FROM tasks")
    assert len(rows) == 200
    assert [(r["task_id"], r["attempts"], r["message"]) for r in rows if r["attempts"] != 1] == []
    for task_id in all_ids[::10]:
        assert (await cluster.log(task_id)).count("ran ") == 1
    logs = await asyncio.to_thread(lambda: [p.read_text() for p in cluster.pool.server.paths.logs.iterdir()])
    assert len(logs) == 200
    assert [text for text in logs if text.count("ran ") != 1] == []
