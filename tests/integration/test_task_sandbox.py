"""Tasks of different users cannot touch each other, write outside their folder, or (task_network off)
reach the network: real pool, real worker (as root, with bwrap where installed), real task processes."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import socket
import zipfile

import psutil
import pytest

from hivemind_tui.proto import nodepool_pb2 as pb
from tests.helpers import make_zip
from tests.integration.cluster import Cluster
from tests.system import require_root, require_tools

pytestmark = pytest.mark.timeout(120)

SECRET = "b-secret-" + secrets.token_hex(8)

# B: keeps a secret in a child's environment and in its output folder, and sleeps until told to stop.
VICTIM = f"""
import os, subprocess, time
os.makedirs("output", exist_ok=True)
open("output/secret.txt", "w").write("{SECRET}")
env = {{**os.environ, "SECRET": "{SECRET}"}}
child = subprocess.Popen(["python3", "-c", "import time; time.sleep(30)"], env=env)
print("victim ready", flush=True)
deadline = time.time() + 25
while time.time() < deadline and not os.path.exists("output/stop"):
    time.sleep(0.1)
child.kill()
print("victim done", flush=True)
"""

# A: looks through every process it can see for B's secret, checks whether it may kill each, tries to write
# outside its folder; reports what it managed.
PROBE = f"""
import json, os, resource
found, killed, wrote = [], [], []
me = os.getpid()
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == me:
        continue
    for what in ("environ", "cmdline"):
        try:
            if b"{SECRET}" in open(f"/proc/{{pid}}/{{what}}", "rb").read():
                found.append(f"{{pid}}/{{what}}")
        except OSError:
            pass
    for link in ("cwd", "root"):
        try:
            base = os.readlink(f"/proc/{{pid}}/{{link}}")
            if "{SECRET}" in open(os.path.join(f"/proc/{{pid}}/{{link}}", "output/secret.txt")).read():
                found.append(f"{{pid}}/{{link}}")
        except OSError:
            pass
    try:  # signal 0: the kernel's permission check for a kill, without killing (a failed sandbox is root)
        os.kill(int(pid), 0)
        killed.append(pid)
    except OSError:
        pass
for path in ("/etc/hivemind-probe", "/var/tmp/hivemind-probe", "/usr/hivemind-probe", "/root/hivemind-probe"):
    try:
        open(path, "w").write("x")
        wrote.append(path)
    except OSError:
        pass
open("/tmp/mine", "w").write("x")  # its own /tmp works
os.makedirs("output", exist_ok=True)
seen = {{"found": found, "killed": killed, "wrote": wrote, "uid": os.getuid()}}
seen["core"] = resource.getrlimit(resource.RLIMIT_CORE)
json.dump(seen, open("output/probe.json", "w"))
"""

CONNECT = """
import json, os, socket, sys
address = json.load(open("target.json"))
try:
    socket.create_connection((address["host"], address["port"]), timeout=3).close()
    reached = True
except OSError as exc:
    reached = False
os.makedirs("output", exist_ok=True)
json.dump({"reached": reached}, open("output/net.json", "w"))
"""


async def result_json(cluster: Cluster, task_id: str, name: str) -> dict:
    reply = await cluster.pool.master.GetTaskResult(pb.GetTaskResultRequest(task_id=task_id, token=cluster.token))
    with zipfile.ZipFile(io.BytesIO(reply.result_zip)) as zf:
        return json.loads(zf.read(name))


async def test_one_users_task_cannot_see_kill_or_read_anothers(cluster: Cluster) -> None:
    require_root()
    node = f"sb-{secrets.token_hex(3)}"
    cluster.worker(node, slots=2)
    await cluster.wait_online(node)
    bob = await cluster.pool.add_user("bob", "operator")
    await cluster.submit("victim", make_zip({"main.py": VICTIM}), token=bob)
    deadline = asyncio.get_running_loop().time() + 30
    while "victim ready" not in await cluster.log("victim"):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    await cluster.submit("probe", make_zip({"main.py": PROBE}))
    probe = await cluster.wait("probe", {"COMPLETED", "FAILED"}, timeout=60)
    assert probe.status == "COMPLETED", probe.message
    seen = await result_json(cluster, "probe", "output/probe.json")
    assert seen["found"] == [] and seen["wrote"] == [] and seen["killed"] == [], seen
    assert seen["uid"] >= 61000
    assert seen["core"] == [0, 0]  # no core dump (one could hold what the task read) and it cannot raise it
    victim = await cluster.task("victim")
    assert victim.status == "RUNNING", victim  # nothing of B's was killed
    await cluster.pool.master.StopTask(pb.StopTaskRequest(task_id="victim", token=bob))


def outside_address() -> str:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    pytest.fail("this host has no non-loopback IPv4 address to test task_network with")


@pytest.mark.parametrize("network", [True, False], ids=["network-on", "network-off"])
async def test_task_network_off_leaves_only_loopback(cluster: Cluster, network: bool) -> None:
    require_root()
    require_tools("bwrap")
    host = outside_address()
    server = await asyncio.start_server(lambda r, w: w.close(), host, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        node = f"net-{secrets.token_hex(3)}"
        cluster.worker(node, HIVEMIND_TASK_NETWORK="true" if network else "false")
        await cluster.wait_online(node)
        target = json.dumps({"host": host, "port": port})
        await cluster.submit("net", make_zip({"main.py": CONNECT, "target.json": target}))
        info = await cluster.wait("net", {"COMPLETED", "FAILED"}, timeout=60)
        assert info.status == "COMPLETED", info.message
        assert (await result_json(cluster, "net", "output/net.json"))["reached"] is network
    finally:
        server.close()
        await server.wait_closed()
