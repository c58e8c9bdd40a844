"""The fixture source: a real `ConsoleBackend` that replays fixed data with a fixed clock and latency.

Snapshot tests and the screenshot script use it, so every byte of their SVGs is stable. All keys in here
are throwaway demo keys derived from fixed bytes; they protect nothing.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from hivemind_tui.core.config import Settings
from hivemind_tui.services.alerts import Alert
from hivemind_tui.services.history import NodePoint
from hivemind_tui.services.host_metrics import DiskUsage, HostSample
from hivemind_tui.services.manifest import Manifest
from hivemind_tui.services.models import NodeInfo, NodeList, PoolHealth, TaskInfo
from hivemind_tui.services.monitor import ClusterSnapshot
from hivemind_tui.services.nodepool_client import ConnectionState
from hivemind_tui.services.retention import Pruned
from hivemind_tui.services.task_manager import ParentState, ProgressCallback, SubmitOptions, SubtaskState
from hivemind_tui.services.task_splitter import SplitPlan, SubtaskPlan
from hivemind_tui.services.wireguard import NewPeer, Peer, PeerStatus, ServerIdentity, WireGuard, public_key
from hivemind_tui.ui.backend import TaskRow, Trends

DEMO_NOW = 1_795_780_800.0  # 2026-11-27 09:20:00 UTC
LATENCY_MS = 1.8


def demo_key(label: str) -> str:
    """A throwaway, deterministic demo key (not secret: anyone can derive it from the label)."""
    return base64.b64encode(hashlib.sha256(f"hivemind-demo:{label}".encode()).digest()).decode()


class FixedClock:
    def __init__(self, now: float = DEMO_NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def demo_nodes(count: int = 12) -> list[NodeInfo]:
    nodes = []
    for i in range(count):
        offline = i % 11 == 7
        gpu = i % 5 == 0
        nodes.append(
            NodeInfo(
                node_id=f"worker-{i:05d}",
                hostname=f"rack{i // 40 + 1}-node{i % 40 + 1:02d}",
                port=50100 + i % 100,
                status="OFFLINE" if offline else ("BUSY" if i % 3 == 0 else "Idle"),
                online=not offline,
                state="cordoned" if i == 4 else "draining" if i == 9 else "active",
                cpu_cores=16 if gpu else 8,
                memory_gb=64 if gpu else 32,
                cpu_score=900 + (i * 37) % 400,
                gpu_score=1000 if gpu else 0,
                gpu_memory_gb=24 if gpu else 0,
                gpu_name="NVIDIA A10" if gpu else "",
                location="eu-west",
                cpu_usage=0.0 if offline else float((i * 29) % 97),
                memory_usage=0.0 if offline else float(20 + (i * 13) % 70),
                gpu_usage=float((i * 17) % 90) if gpu and not offline else 0.0,
                running_tasks=0 if offline else i % 4,
                slots=4,
                last_heartbeat=DEMO_NOW - (600 + i if offline else 2 + i % 5),
                isolation="uid per task 61000-61999; bwrap: pid, ipc, mount",
            )
        )
    return nodes


def demo_tasks() -> list[TaskInfo]:
    base = DEMO_NOW - 3600
    tasks = []
    for i in range(8):
        status = "COMPLETED" if i < 5 else "RUNNING" if i < 7 else "PENDING"
        tasks.append(
            TaskInfo(
                f"etl-7f3a2c.{i:04d}",
                status,
                worker=f"worker-{i:05d}",
                owner="alice",
                created_at=base,
                updated_at=base + 60 * i,
                priority=2,
                task_type="data_processing",
                parent_task_id="etl-7f3a2c",
            )
        )
    tasks += [
        TaskInfo(
            "render-b81e04",
            "FAILED",
            "exit code 1; last lines of stderr:\nValueError: bad frame 812",
            "worker-00002",
            "bob",
            base + 300,
            base + 900,
            0,
            "other",
            "",
            1,
        ),
        TaskInfo(
            "sweep-19c2d0",
            "PENDING",
            "waiting: no online node with 128 GB memory",
            "",
            "alice",
            base + 1200,
            base + 1300,
            5,
            "machine_learning",
        ),
        TaskInfo("montecarlo-5d", "COMPLETED", "", "worker-00003", "carol", base + 100, base + 700, 1, "simulation"),
    ]
    return tasks


DEMO_SERVER = ServerIdentity(
    public_key(demo_key("server")),
    51820,
    "10.0.0.1",
    "",
    "vpn.example.org",
    "wg0",
    "10.0.0.0/24",
    "",
    "10.0.0.1",
    1420,
    25,
    DEMO_NOW - 30 * 86400,
)
DEMO_LOG = "".join(f"[{i:03d}] processed shard rows {i * 1000}-{i * 1000 + 999}\n" for i in range(40))


class CannedLog:
    """A log that is all there at once: the first poll gives every complete line, later ones nothing."""

    def __init__(self, text: str) -> None:
        self._lines = text.split("\n")[:-1]

    async def poll(self) -> list[str]:
        lines, self._lines = self._lines, []
        return lines


class DemoBackend:
    """The fixture source. `nodes` sets the cluster size (10,000 for the scale tests)."""

    def __init__(
        self,
        settings: Settings | None = None,
        nodes: int = 12,
        logged_in: bool = True,
        role: str = "admin",
        reachable: bool = True,
    ) -> None:
        self.settings = settings or Settings(refresh_interval=3600.0)
        self.clock = FixedClock()
        self._logged_in = logged_in
        self._role = role
        self._reachable = reachable
        self.nodes = demo_nodes(nodes)
        self.tasks = demo_tasks()
        self.node_states: list[tuple[list[str], str]] = []
        self.stopped: list[str] = []
        self.peers = [
            self._peer(1, "laptop-alice", "alice", "10.0.0.2", "full", ()),
            self._peer(2, "phone-bob", "bob", "10.0.0.3", "split", ("192.168.10.0/24",)),
        ]

    def _peer(self, pid: int, name: str, owner: str, address: str, mode: str, nets: tuple[str, ...]) -> Peer:
        return Peer(
            pid,
            name,
            owner,
            address,
            "",
            public_key(demo_key(name)),
            demo_key(name + "-psk"),
            mode,
            nets,
            True,
            DEMO_NOW - 86400 * pid,
            None,
        )

    # -- session ----------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return "127.0.0.1:50051"

    @property
    def embedded(self) -> bool:
        return True

    @property
    def username(self) -> str:
        return "alice" if self._logged_in else ""

    @property
    def pool_has_roles(self) -> bool:
        return True

    @property
    def role(self) -> str:
        return "viewer" if self.settings.readonly else self._role

    @property
    def connection(self) -> ConnectionState:
        if not self._reachable:
            return ConnectionState("reconnecting", DEMO_NOW - 42, DEMO_NOW + 3, None, 4)
        return ConnectionState("connected", DEMO_NOW - 7200, None, LATENCY_MS, 0)

    @property
    def admin_password_file(self) -> Path | None:
        return Path("~/.local/share/hivemind-tui/pool/admin-password")

    @property
    def exports_dir(self) -> Path:
        return Path("~/.local/share/hivemind-tui/exports")

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def has_session(self) -> bool:
        return self._logged_in

    async def login(self, address: str, username: str, password: str, remember: bool) -> None:
        from hivemind_tui.services.errors import AuthenticationFailedError

        if password != "demo":
            raise AuthenticationFailedError("INVALID_CREDENTIALS: wrong user name or password")
        self._logged_in = True

    async def logout(self) -> None:
        self._logged_in = False

    # -- data -------------------------------------------------------------------------------------
    def host(self) -> HostSample:
        return HostSample(
            DEMO_NOW,
            23.5,
            (31.0, 12.0, 40.5, 10.5),
            (0.82, 0.65, 0.51),
            61.2,
            10_400_000_000,
            17_000_000_000,
            3.1,
            (DiskUsage("/var/lib/hivemind", 47.0, 47_000_000_000, 100_000_000_000),),
            120_000.0,
            2_400_000.0,
            310_000.0,
            1_250_000.0,
            2.5,
            96_000_000,
            14,
        )

    async def refresh(self) -> ClusterSnapshot:
        snap = ClusterSnapshot(DEMO_NOW, self.address, self.connection, username=self.username, role=self.role)
        if self._reachable:
            snap.health = PoolHealth("0.1.0", ("GetNodeList", "Health"), DEMO_NOW, LATENCY_MS)
            snap.nodes, snap.nodes_at = NodeList(True, list(self.nodes)), DEMO_NOW
            snap.tasks, snap.tasks_at = list(self.tasks), DEMO_NOW
            snap.balance = 1000
        else:
            snap.problems.append(f"the Node Pool at {self.address} cannot be reached")
        snap.host = self.host()
        snap.active_alerts = [
            Alert(
                1,
                "node_offline:worker-00007",
                "node_offline",
                "worker-00007",
                "node worker-00007 went offline",
                DEMO_NOW - 600,
                None,
            ),
            Alert(
                2,
                "task_failed:render-b81e04",
                "task_failed",
                "render-b81e04",
                "task render-b81e04 failed: exit code 1",
                DEMO_NOW - 300,
                None,
            ),
        ]
        return snap

    def change_nodes(self, fraction: float, step: int) -> None:
        """Move `fraction` of the nodes' figures (the scale tests' in-place updates)."""
        every = max(1, int(1 / fraction))
        for i in range(step % every, len(self.nodes), every):
            n = self.nodes[i]
            self.nodes[i] = n._replace(
                cpu_usage=float((n.cpu_usage + 7) % 100), running_tasks=(n.running_tasks + 1) % 5
            )

    async def trends(self, since: float, step: float) -> Trends:
        return Trends([30 + (i * 7) % 50 for i in range(60)], [float((i * 3) % 7) for i in range(60)])

    async def node_history(self, node_id: str, since: float) -> list[NodePoint]:
        seed = sum(map(ord, node_id))
        return [
            NodePoint(
                DEMO_NOW - 3600 + 60 * i,
                float((seed + i * 11) % 100),
                float((seed + i * 5) % 80 + 10),
                float((seed + i * 3) % 60),
            )
            for i in range(60)
        ]

    async def set_node_state(self, node_ids: list[str], state: str) -> list[str]:
        self.node_states.append((list(node_ids), state))
        return list(node_ids)

    async def task_rows(self, tasks: list[TaskInfo]) -> list[TaskRow]:
        rows = [
            TaskRow(
                "etl-7f3a2c", "RUNNING", "", "data_processing", 2, "alice", DEMO_NOW - 3600, DEMO_NOW - 60, 5, 8, True
            )
        ]
        rows += [TaskRow.of_task(t) for t in tasks if not t.parent_task_id]
        return rows

    async def parent(self, task_id: str, tasks: list[TaskInfo]) -> ParentState | None:
        if task_id != "etl-7f3a2c":
            return None
        subs = [
            SubtaskState(t.task_id, i, 0, True, t.status, t.message, t.worker, 120_000, f'{{"shard": {i}}}')
            for i, t in enumerate(t for t in tasks if t.parent_task_id == task_id)
        ]
        return ParentState(task_id, "alice", "data_processing", 2, DEMO_NOW - 3600, True, "RUNNING", "", 5, 8, subs)

    async def stop_tasks(self, task_ids: list[str], tasks: list[TaskInfo]) -> list[str]:
        self.stopped += task_ids
        return task_ids

    async def retry_tasks(self, task_ids: list[str], tasks: list[TaskInfo]) -> list[str]:
        return [f"{t}.r1" for t in task_ids]

    def log_follower(self, task_id: str) -> CannedLog:
        return CannedLog(DEMO_LOG)

    async def download(
        self, task_id: str, tasks: list[TaskInfo], path: Path, on_progress: ProgressCallback | None
    ) -> int:
        return 0

    async def plan(self, zip_path: Path, options: SubmitOptions) -> SplitPlan:
        shards = options.shards or 4
        subtasks = [
            SubtaskPlan(i, 1_048_576 + i * 512, 25_000 + i, {"shard": i, "input": "data/input.csv"}, 1 / shards)
            for i in range(shards)
        ]
        return SplitPlan(
            "etl-demo01",
            "data_processing",
            Manifest("data_processing", 2, "data/input.csv", True),
            subtasks,
            67_108_864,
            notes=["weights from 11 free slots on 8 nodes"],
        )

    async def submit(self, zip_path: Path, options: SubmitOptions, on_progress: ProgressCallback) -> str:
        return "etl-demo01"

    async def resume(self, on_progress: ProgressCallback) -> list[str]:
        return []

    async def prune(self) -> Pruned:
        return Pruned(0, 0, 0, 0)

    async def vpn_server(self) -> ServerIdentity | None:
        return DEMO_SERVER

    async def vpn_peers(self) -> tuple[list[Peer], dict[str, PeerStatus] | None]:
        peers = self.peers if self.role == "admin" else [p for p in self.peers if p.owner == self.username]
        return peers, {
            self.peers[0].public_key: PeerStatus(
                self.peers[0].public_key, "203.0.113.5:41820", DEMO_NOW - 40, 1_200_000, 3_400_000
            )
        }

    def _new(self, peer: Peer) -> NewPeer:
        private = demo_key(peer.name)
        return NewPeer(peer, private, WireGuard.client_config(DEMO_SERVER, peer, private))

    async def vpn_add(self, name: str, networks: tuple[str, ...], keep_key: bool) -> NewPeer:
        peer = self._peer(
            len(self.peers) + 1,
            name,
            self.username,
            f"10.0.0.{len(self.peers) + 2}",
            "split" if networks else "full",
            networks,
        )
        self.peers.append(peer)
        return self._new(peer)

    async def vpn_rekey(self, name: str) -> NewPeer:
        return self._new(next(p for p in self.peers if p.name == name))

    async def vpn_revoke(self, name: str) -> None:
        self.peers = [p for p in self.peers if p.name != name]

    async def vpn_config(self, name: str) -> str:
        return self._new(next(p for p in self.peers if p.name == name)).config

    async def vpn_server_config(self) -> str:
        return "[Interface]\n# hivemind-tui server\nPrivateKey = " + demo_key("server") + "\n"

    async def vpn_apply(self, dry_run: bool) -> tuple[Path, list[str], bool]:
        conf = Path("/var/lib/hivemind/vpn/wg0.conf")
        return (
            conf,
            [
                f"wg-quick strip {conf} > /var/lib/hivemind/vpn/wg0.stripped",
                "wg syncconf wg0 /var/lib/hivemind/vpn/wg0.stripped",
            ],
            False,
        )

    async def vpn_export(self, path: Path, text: str) -> None:
        return None
