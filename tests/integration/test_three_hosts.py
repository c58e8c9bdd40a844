"""Three hosts for real: a master and two workers in network namespaces this test creates.

`master`, `w1` and `w2` are joined by veth pairs on a bridge in `master`, with TEST-NET addresses that exist
only inside them. Over the VPN: the master's WireGuard server (vpn init, vpn add --worker, vpn apply into a
wireguard-go interface), the workers' configs loaded with `wg setconf`, a plaintext pool on the VPN
server's address, workers that join with the printed `worker --join` command through the tunnel. Over
plain veth: the same with TLS from `tls init`. In both, a data_processing task with 4 shards runs on both
workers and its result equals the unsplit run; then w2's link is cut and its running subtask finishes on
w1, nothing lost and nothing counted twice. Everything is removed afterwards, also when the test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import FAST_ENV, make_zip
from tests.integration.cli_harness import CLI, ENV
from tests.integration.test_split_tasks import DP_MAIN, DP_MANIFEST, run_whole
from tests.system import require_wireguard_namespaces

pytestmark = [pytest.mark.timeout(300), pytest.mark.xdist_group("three-hosts")]

MASTER_IP = "192.0.2.1"
WORKER_IPS = {"w1": "192.0.2.11", "w2": "192.0.2.12"}
VPN_POOL = "10.77.0.0/24"
VPN_SERVER = "10.77.0.1"
POOL_PORT = 50551
MODULE = [sys.executable, "-m", "hivemind_tui"]
SLOW_MAIN = "import time\ntime.sleep(3)\n" + DP_MAIN


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=timeout)


class Hosts:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        # Node ids of their own: a worker's task folder is named after its node id in the shared /tmp.
        self.node = {name: f"{name}-{tag}" for name in WORKER_IPS}
        self.ns = {name: f"hm-{name}-{tag}" for name in ("master", "w1", "w2")}
        self.links = {w: f"hm{w}{tag}" for w in WORKER_IPS}  # the master's end of each worker's cable
        self.wg = {name: f"hmwg{name[-1]}{tag}" for name in self.ns}
        self.procs: list[subprocess.Popen[str]] = []

    def run(self, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns[host], *args, check=check)

    def up(self) -> None:
        for ns in self.ns.values():
            sh("ip", "netns", "add", ns)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        self.run("master", "ip", "link", "add", "br0", "type", "bridge")
        self.run("master", "ip", "addr", "add", f"{MASTER_IP}/24", "dev", "br0")
        self.run("master", "ip", "link", "set", "br0", "up")
        for worker, address in WORKER_IPS.items():
            link = self.links[worker]
            sh(
                "ip",
                "link",
                "add",
                link,
                "netns",
                self.ns["master"],
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                self.ns[worker],
            )
            self.run("master", "ip", "link", "set", link, "master", "br0")
            self.run("master", "ip", "link", "set", link, "up")
            self.run(worker, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            self.run(worker, "ip", "link", "set", "eth0", "up")

    def start(self, host: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[host], *command],
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def wireguard(self, host: str) -> str:
        dev = self.wg[host]
        self.start(host, ["wireguard-go", "-f", dev], {"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"})
        deadline = time.monotonic() + 10
        while not Path(f"/var/run/wireguard/{dev}.sock").exists():
            assert time.monotonic() < deadline, "wireguard-go did not start"
            time.sleep(0.05)
        return dev

    def load(self, host: str, config: str, address: str, workdir: Path) -> None:
        """A generated config into the host's interface: `wg-quick strip`, `wg setconf`, its address."""
        dev = self.wg[host]
        conf = workdir / f"{dev}.conf"  # wg-quick strip only takes IFACE.conf
        conf.write_text(config)
        conf.chmod(0o600)
        plain = workdir / f"{dev}.stripped"
        plain.write_text(sh("wg-quick", "strip", str(conf)).stdout)
        self.run(host, "wg", "setconf", dev, str(plain))
        self.run(host, "ip", "addr", "add", f"{address}/24", "dev", dev)
        self.run(host, "ip", "link", "set", dev, "up")

    def down(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for ns in self.ns.values():
            sh("ip", "netns", "del", ns, check=False)
        for dev in self.wg.values():
            Path(f"/var/run/wireguard/{dev}.sock").unlink(missing_ok=True)


class HostCLI(CLI):
    """The command line run inside one of the hosts."""

    def __init__(self, hosts: Hosts, host: str, data: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(data)
        self.prefix = ["ip", "netns", "exec", hosts.ns[host]]
        self.env = env or {}

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.prefix, sys.executable, "-m", "hivemind_tui", "--data-dir", str(self.data), *args],
            env={**os.environ, **ENV, **self.env},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    require_wireguard_namespaces()
    made = Hosts()
    try:
        made.up()
        yield made
    finally:
        made.down()


def worker_process(hosts: Hosts, host: str, join_command: str, data: Path) -> subprocess.Popen[str]:
    """The printed `hivemind-tui worker --join ...` command, as printed, with this test's data dir."""
    words = shlex.split(join_command)
    assert words[:3] == ["hivemind-tui", "worker", "--join"], join_command
    command = [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data), *words[1:], "--slots", "1"]
    return hosts.start(host, [*command, "--node-id", hosts.node[host]], FAST_ENV)


def wait_until(what: str, check, timeout: float = 60, every: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def log_in(cli: HostCLI) -> None:
    password = (cli.data / "pool" / "admin-password").read_text().strip()
    cli.json("login", "--user", "admin", "--password-stdin", stdin=password + "\n")


def online(cli: HostCLI) -> set[str]:
    return {n["node_id"] for n in cli.json("nodes", "list")["nodes"] if n["online"]}


def subtasks(cli: HostCLI, parent: str) -> list[dict]:
    return cli.json("tasks", "show", parent)["subtasks"]


def result_lines(cli: HostCLI, parent: str, tmp_path: Path) -> list[bytes]:
    out = tmp_path / f"{parent}.zip"
    doc = cli.json("tasks", "result", parent, "--output", str(out))
    assert doc["aggregate"]["missing"] == [] and doc["aggregate"]["failed"] == []
    with zipfile.ZipFile(out) as zf:
        summary = json.loads(zf.read("aggregate.json"))
        assert summary["completed"] == summary["total"] == 4
        return zf.read("output/result.csv").splitlines()


def serve_pool(hosts: Hosts, data: Path, listen: str, env: dict[str, str]) -> None:
    """`pool serve --listen LISTEN --workers 0` on the master, once it has written pool.json."""
    command = [*MODULE, "--data-dir", str(data), "pool", "serve", "--listen", listen, "--workers", "0"]
    pool = hosts.start("master", command, env)
    wait_until(f"the pool on {listen}", lambda: (data / "pool" / "pool.json").exists() or pool.poll())
    assert pool.poll() is None, pool.stderr.read() if pool.stderr else ""


def run_the_cluster(hosts: Hosts, cli: HostCLI, workers: dict[str, str], tmp_path: Path) -> dict[str, float]:
    """Join both workers, run a split task on both, cut w2's link mid-task: the figures of the run."""
    figures: dict[str, float] = {}
    log_in(cli)
    started = time.monotonic()
    for host, command in workers.items():
        worker_process(hosts, host, command, tmp_path / f"{host}-data")
    w1, w2 = hosts.node["w1"], hosts.node["w2"]
    wait_until("both workers online", lambda: online(cli) >= {w1, w2})
    figures["join_s"] = time.monotonic() - started

    rows = "id,name\n" + "".join(f"{i},name{i}\n" for i in range(1, 201))
    files = {"main.py": DP_MAIN, "hivemind.toml": DP_MANIFEST, "data/in.csv": rows}
    whole = run_whole(tmp_path, files)["output/result.csv"].splitlines()
    (tmp_path / "dp.zip").write_bytes(make_zip(files))
    started = time.monotonic()
    done = cli.json("tasks", "submit", str(tmp_path / "dp.zip"), "--shards", "4", "--wait")
    figures["task_s"] = time.monotonic() - started
    assert done["status"] == "COMPLETED", done
    ran_on = {s["worker"] for s in subtasks(cli, done["task_id"])}
    assert ran_on == {w1, w2}, ran_on
    assert result_lines(cli, done["task_id"], tmp_path) == whole

    slow = {**files, "main.py": SLOW_MAIN}
    (tmp_path / "slow.zip").write_bytes(make_zip(slow))
    parent = cli.json("tasks", "submit", str(tmp_path / "slow.zip"), "--shards", "4")["task_id"]
    on_w2 = wait_until(
        "a subtask running on w2",
        lambda: [s["task_id"] for s in subtasks(cli, parent) if s["worker"] == w2 and s["status"] == "RUNNING"],
    )[0]
    hosts.run("master", "ip", "link", "set", hosts.links["w2"], "down")
    cut = time.monotonic()
    wait_until(
        "w2's subtask re-queued and taken by w1",
        lambda: any(s["task_id"] == on_w2 and s["worker"] == w1 for s in subtasks(cli, parent)),
        every=0.1,
    )
    figures["requeue_s"] = time.monotonic() - cut
    wait_until(
        "the task done",
        lambda: cli.json("tasks", "show", parent)["task"]["status"] in ("COMPLETED", "FAILED"),
        timeout=120,
    )
    final = subtasks(cli, parent)
    assert [s["status"] for s in final] == ["COMPLETED"] * 4, final
    assert next(s for s in final if s["task_id"] == on_w2)["worker"] == w1
    assert result_lines(cli, parent, tmp_path) == whole  # each shard's rows once: nothing lost or doubled
    print(f"\nthree hosts: {json.dumps({k: round(v, 2) for k, v in figures.items()})}")
    return figures


def test_workers_join_over_the_vpn_and_survive_a_cut_link(hosts: Hosts, tmp_path: Path) -> None:
    master_data = tmp_path / "master-data"
    env = {
        "VPN_SERVER_IP": MASTER_IP,
        "HIVEMIND_VPN_ADDRESS_POOL": VPN_POOL,
        "HIVEMIND_VPN_INTERFACE": hosts.wg["master"],
        "HIVEMIND_VPN_KEEPALIVE": "1",
        "HIVEMIND_POOL_LISTEN": f"{VPN_SERVER}:{POOL_PORT}",
    }
    cli = HostCLI(hosts, "master", master_data, env)
    assert cli.json("vpn", "init")["address"] == VPN_SERVER
    added = {w: cli.json("vpn", "add", w, "--worker") for w in WORKER_IPS}
    for doc in added.values():
        assert "DNS" not in doc["config"] and f"AllowedIPs = {VPN_POOL}" in doc["config"]
    hosts.wireguard("master")
    hosts.run("master", "ip", "addr", "add", f"{VPN_SERVER}/24", "dev", hosts.wg["master"])
    hosts.run("master", "ip", "link", "set", hosts.wg["master"], "up")
    assert cli.json("vpn", "apply")["loaded"] is True
    for worker, doc in added.items():
        hosts.wireguard(worker)
        hosts.load(worker, doc["config"], doc["peer"]["address"], tmp_path)
    serve_pool(hosts, master_data, f"{VPN_SERVER}:{POOL_PORT}", {**ENV, **env})
    run_the_cluster(hosts, cli, {w: doc["join_command"] for w, doc in added.items()}, tmp_path)


def test_workers_join_over_tls_on_plain_veth(hosts: Hosts, tmp_path: Path) -> None:
    master_data = tmp_path / "master-data"
    cli = HostCLI(hosts, "master", master_data)
    assert cli("tls", "init", "--host", MASTER_IP).returncode == 0
    serve_pool(hosts, master_data, f"{MASTER_IP}:{POOL_PORT}", ENV)
    token = cli.json("pool", "join-token", "--ttl", "10m")
    assert token["tls"] is True and token["addresses"] == [f"{MASTER_IP}:{POOL_PORT}"]
    commands = {w: f"hivemind-tui worker --join {token['token']} --listen {ip}:0" for w, ip in WORKER_IPS.items()}
    web_face_over_https(hosts, master_data)
    run_the_cluster(hosts, cli, commands, tmp_path)


def web_face_over_https(hosts: Hosts, master_data: Path) -> None:
    """`serve` on the master's address needs no --insecure-public once `tls init` has run: it speaks HTTPS
    with the pool's certificate, and a browser on w1 that trusts the CA gets /health."""
    listen = f"{MASTER_IP}:{POOL_PORT + 10}"
    face = hosts.start("master", [*MODULE, "--data-dir", str(master_data), "serve", "--listen", listen], ENV)
    ask = (
        "import ssl, sys, urllib.request; "
        f"trust = ssl.create_default_context(cafile={str(master_data / 'tls' / 'ca.pem')!r}); "
        f"print(urllib.request.urlopen('https://{listen}/health', timeout=5, context=trust).read().decode())"
    )

    def health_from_w1() -> subprocess.CompletedProcess[str] | None:
        assert face.poll() is None, face.stderr.read() if face.stderr else ""
        answer = hosts.run("w1", sys.executable, "-c", ask, check=False)
        return answer if answer.returncode == 0 else None

    answer = wait_until("the HTTP face on the master", health_from_w1)
    assert json.loads(answer.stdout)["status"] == "healthy"
    face.terminate()
