"""Client services against a real pool: session, refresh, faults, degraded pools, history, alerts."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hivemind_tui.core.errors import NotSupportedError
from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.services import nodepool_client
from hivemind_tui.services.alerts import Alerts, Condition
from hivemind_tui.services.errors import NotConnectedError, SessionExpiredError, TokenExpiredError
from hivemind_tui.services.history import History
from hivemind_tui.services.models import NodeInfo
from hivemind_tui.services.nodepool_client import PoolClient
from hivemind_tui.services.session import Session, token_file
from hivemind_tui.services.store import Store
from tests.conftest import fast_settings
from tests.helpers import FakeClock, Pool, start_pool, task_zip
from tests.proxy import FaultProxy

PASSWORD = "pw-" + "x" * 8


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[Pool]:
    running = await start_pool(fast_settings(tmp_path / "data", token_ttl=600), FakeClock())
    await running.add_user("alice")
    yield running
    await running.close()


async def test_session_login_remember_and_file_mode(pool: Pool, tmp_path: Path) -> None:
    client = PoolClient(pool.settings, pool.address, clock=pool.clock)
    session = Session(client, tmp_path / "tokens", clock=pool.clock)
    data = await session.login("alice", PASSWORD, remember=True)
    assert data.role == "operator" and data.expires_at == pytest.approx(pool.clock.now + 600)
    path = token_file(tmp_path / "tokens", pool.address)
    assert path.stat().st_mode & 0o777 == 0o600 and PASSWORD not in path.read_text()
    again = Session(PoolClient(pool.settings, pool.address), tmp_path / "tokens", clock=pool.clock)
    assert again.load() and again.username == "alice"
    assert await again.call(again.client.balance) == 1000
    await again.logout()
    assert not path.exists()
    with pytest.raises(SessionExpiredError):
        await session.call(session.client.balance)  # the token was revoked; refresh cannot mend it
    await client.close()
    await again.client.close()


async def test_refresh_before_expiry_and_retry_on_expired_token(pool: Pool, tmp_path: Path) -> None:
    client = PoolClient(pool.settings, pool.address, clock=pool.clock)
    session = Session(client, tmp_path / "tokens", clock=pool.clock)
    await session.login("alice", PASSWORD)
    first = session.data.token
    pool.clock.advance(545)  # inside the last tenth of the 600 s life: refreshed before the call
    assert await session.call(client.balance) == 1000
    assert session.data.token != first
    second = session.data.token
    await pool.users.Logout(pb.LogoutRequest(token=second))
    with pytest.raises(SessionExpiredError):  # INVALID_TOKEN, and a refresh of it is refused too
        await session.call(client.balance)
    await session.login("alice", PASSWORD)
    pool.clock.advance(700)  # the whole life passed (an outage longer than a token's life)
    with pytest.raises(SessionExpiredError):
        await session.call(client.balance)
    await client.close()


async def test_calls_that_find_the_token_due_together_refresh_it_once(
    pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A console refresh makes several calls at once; each found the token due and refreshed it in turn."""
    client = PoolClient(pool.settings, pool.address, clock=pool.clock)
    session = Session(client, tmp_path / "tokens", clock=pool.clock)
    await session.login("alice", PASSWORD)
    refreshed: list[int] = []  # how many, not which: a token never goes into a failure message
    refresh = client.refresh

    async def counted(token: str):  # type: ignore[no-untyped-def]
        refreshed.append(1)
        return await refresh(token)

    monkeypatch.setattr(client, "refresh", counted)
    pool.clock.advance(545)
    balances = await asyncio.gather(*(session.call(client.balance) for _ in range(3)))
    assert balances == [1000, 1000, 1000] and len(refreshed) == 1
    await client.close()


async def test_pool_cut_then_back_reconnects_by_itself(pool: Pool, tmp_path: Path) -> None:
    proxy = await FaultProxy(int(pool.address.rsplit(":", 1)[1])).start()
    settings = pool.settings.with_overrides(rpc_deadline=1.0)
    client = PoolClient(settings, proxy.address, clock=pool.clock)
    session = Session(client, tmp_path / "tokens", clock=pool.clock)
    await session.login("alice", PASSWORD)
    assert client.state.status == "connected"
    proxy.cut()
    with pytest.raises(NotConnectedError) as err:
        await session.call(client.balance)
    assert client.state.status in ("reconnecting", "disconnected") and client.state.next_retry_at
    assert "cannot be reached" in err.value.message and err.value.exit_code == 3
    proxy.mode = "pass"
    deadline = time.monotonic() + 20
    while True:
        try:
            assert await session.call(client.balance) == 1000
            break
        except NotConnectedError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    assert client.state.status == "connected"
    await client.close()
    await proxy.close()


async def test_dropped_packets_hit_the_deadline(pool: Pool, tmp_path: Path) -> None:
    proxy = await FaultProxy(int(pool.address.rsplit(":", 1)[1])).start()
    client = PoolClient(pool.settings.with_overrides(rpc_deadline=0.5), proxy.address)
    await client.check_health()
    proxy.mode = "drop"
    with pytest.raises(NotConnectedError):  # without the deadline this would hang until pytest-timeout
        await client.check_health()
    await client.close()
    await proxy.close()


async def test_upload_is_not_sent_twice_when_the_answer_is_lost(pool: Pool, tmp_path: Path) -> None:
    client = PoolClient(pool.settings, pool.address)
    session = Session(client, tmp_path / "t")
    await session.login("alice", PASSWORD)
    await session.call(lambda tok: client.upload_task(tok, "once", task_zip()))
    from hivemind_tui.services.errors import RejectedError

    with pytest.raises(RejectedError) as err:
        await session.call(lambda tok: client.upload_task(tok, "once", task_zip()))
    assert err.value.code == "TASK_EXISTS"
    await client.close()


async def test_a_zip_of_several_chunks_arrives_whole(pool: Pool, tmp_path: Path) -> None:
    import os
    import zipfile

    from tests.helpers import make_zip

    zipped = make_zip({"main.py": "print(1)", "blob.bin": os.urandom(3 * 1024 * 1024 + 5)}, zipfile.ZIP_STORED)
    client = PoolClient(pool.settings, pool.address)
    session = Session(client, tmp_path / "t")
    await session.login("alice", PASSWORD)
    await session.call(lambda tok: client.upload_task(tok, "big", zipped, priority=4))
    assert (pool.server.paths.tasks / "big.zip").read_bytes() == zipped
    (task,) = (await session.call(client.list_tasks)).tasks
    assert (task.task_id, task.priority) == ("big", 4)
    await client.close()


async def test_hivemind_compatible_pool_degrades(tmp_path: Path) -> None:
    from hivemind_tui.core.datadir import DataDir
    from hivemind_tui.nodepool.server import PoolServer

    settings = fast_settings(tmp_path / "hm")
    server = PoolServer(settings, DataDir(settings.data_path), listen="127.0.0.1:0", hivemind_compat=True)
    await server.start()
    try:
        await server.parts.accounts.create_user("bob", PASSWORD, "operator", 10)
        client = PoolClient(settings, server.address)
        health = await client.check_health()
        assert health.version == "unknown (HiveMind)" and health.extensions == ()
        session = Session(client, tmp_path / "t")
        data = await session.login("bob", PASSWORD)
        assert data.role == "operator" and data.expires_at is None  # role unset: operator, as the README says
        listed = await session.call(client.list_nodes)
        assert not listed.supported and listed.nodes == []
        await session.call(lambda tok: client.upload_task(tok, "hm-1", task_zip()))
        unaware = PoolClient(settings, server.address)  # no Health asked: UploadTaskStream is tried, then not
        await session.call(lambda tok: unaware.upload_task(tok, "hm-2", task_zip()))
        await session.call(lambda tok: unaware.upload_task(tok, "hm-3", task_zip()))
        await unaware.close()
        task, *others = sorted((await session.call(client.list_tasks)).tasks, key=lambda t: t.task_id)
        assert [t.task_id for t in others] == ["hm-2", "hm-3"]
        assert task.task_id == "hm-1" and task.created_at is None and task.owner == ""
        with pytest.raises(NotSupportedError):
            await session.call(lambda tok: client.task_log_since(tok, "hm-1", 0))
        assert await session.call(lambda tok: client.task_log(tok, "hm-1")) == ""
        with pytest.raises(NotSupportedError):  # the task manager then stops subtasks one by one
            await session.call(lambda tok: client.stop_tasks(tok, ["hm-1"]))
        with pytest.raises(TokenExpiredError):  # HiveMind's empty list for a bad token, told apart by GetBalance
            await client.list_tasks("bad-token")
        await session.logout()  # Logout is UNIMPLEMENTED: the token is simply forgotten
        await client.close()
    finally:
        await server.stop(grace=1)


async def test_history_retention_keeps_the_store_bounded(tmp_path: Path) -> None:
    async with Store(tmp_path / "console.db") as store:
        history = History(store)
        clock = FakeClock(1_800_000_000)
        nodes = [NodeInfo(node_id=f"n{i}", cpu_usage=50.0 + i, online=True) for i in range(20)]
        start = clock.now
        for _ in range(2 * 3600 // 5):  # two hours of 5 s refreshes
            await history.record_nodes(nodes, clock.now)
            clock.advance(5)
            if int(clock.now - start) % 300 == 0:
                await history.compact(clock.now)
        await history.compact(clock.now)
        raw, minutes = await history.row_counts()
        assert raw <= 20 * 721 and minutes == 20 * 60
        points = await history.node_history("n3", clock.now - 7200)
        assert points[0].cpu == pytest.approx(53.0) and len(points) >= 60 + 700
        clock.advance(8 * 86400)
        await history.compact(clock.now)
        assert await history.row_counts() == (0, 0)


async def test_alerts_raise_once_and_clear(tmp_path: Path) -> None:
    async with Store(tmp_path / "console.db") as store:
        alerts = Alerts(store)
        down = Condition("node_offline:n1", "node_offline", "n1", "node n1 went offline")
        raised, cleared = await alerts.evaluate([down], 100.0)
        assert [a.key for a in raised] == ["node_offline:n1"] and cleared == []
        raised, cleared = await alerts.evaluate([down], 105.0)
        assert raised == [] and cleared == []
        raised, cleared = await alerts.evaluate([], 110.0, kinds={"task_failed"})
        assert cleared == []  # node alerts were not judged this time
        raised, cleared = await alerts.evaluate([], 115.0)
        assert [a.cleared_at for a in cleared] == [115.0]
        assert await alerts.list() == [] and len(await alerts.list(include_cleared=True)) == 1


async def test_monitor_fetches_only_changed_tasks_and_runs_the_alert_hook(pool: Pool, tmp_path: Path) -> None:
    from hivemind_tui.services.monitor import Monitor

    hook_out = tmp_path / "hook.jsonl"
    settings = pool.settings.with_overrides(alert_hook=f"sh -c 'cat >> {hook_out}'")
    client = PoolClient(settings, pool.address, clock=pool.clock)
    session = Session(client, tmp_path / "t", clock=pool.clock)
    await session.login("alice", PASSWORD)
    token = session.data.token
    for i in range(3):
        await client.upload_task(token, f"m{i}", task_zip())
    calls: list[int | None] = []
    original = client.list_tasks

    async def counting(tok: str, updated_since: float = 0.0, limit: int = 0, after_seq: int | None = None, **kw):
        calls.append(after_seq)
        return await original(tok, updated_since, limit, after_seq, **kw)

    client.list_tasks = counting  # type: ignore[method-assign]
    async with Store(tmp_path / "console.db") as store:
        monitor = Monitor(settings, session, None, History(store), Alerts(store), clock=pool.clock)
        first = await monitor.refresh()
        assert {t.task_id for t in first.tasks} == {"m0", "m1", "m2"} and calls == [None]
        pool.clock.advance(10)
        await client.stop_task(token, "m1")
        # A write that took its time before committing: its time is older than the last answer's, so a
        # refresh by time (less its 2 s margin) would miss it; the change number does not.
        await pool.server.storage.update_task("m2", pool.clock.now - 60, message="committed late")
        second = await monitor.refresh()
        assert calls[1] is not None and calls[1] > 0  # only what changed since the pool's last answer
        assert {t.task_id: t.status for t in second.tasks}["m1"] == "STOPPED" and len(second.tasks) == 3
        # The counts follow the changed entries; the listing names them, and keeps the others' objects.
        assert second.task_counts == dict(Counter(t.status for t in second.tasks))
        assert second.tasks.changes_since(monitor, first.tasks.generation) == {"m1", "m2"}
        assert second.tasks.by_id["m2"].message == "committed late"
        assert second.tasks.by_id["m0"] is first.tasks.by_id["m0"]
        client.address = "127.0.0.1:1"  # the pool goes away: an alert, and the hook hears of it
        await client.close()
        third = await monitor.refresh()
        assert any(a.kind == "pool_unreachable" for a in third.raised)
    assert '"event": "raised"' in hook_out.read_text() and "pool_unreachable" in hook_out.read_text()
    await client.close()


async def test_a_full_task_list_comes_in_pages_with_each_task_once(
    pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nodepool_client, "LIST_PAGE", 3)
    client = PoolClient(pool.settings, pool.address)
    session = Session(client, tmp_path / "t")
    await session.login("alice", PASSWORD)
    token = session.data.token
    for i in range(7):
        await client.upload_task(token, f"p{i}", task_zip())
    pages: list[tuple[int | None, int, int]] = []  # (asked after, limit, answered seq)
    ask = client._list_reply

    async def listing(token: str, since: float, limit: int, after: int | None) -> pb.GetAllTasksResponse:
        reply = await ask(token, since, limit, after)
        pages.append((after, limit, reply.seq))
        if len(pages) == 1:  # a task changes while the pages come: it is listed again, later
            await client.stop_task(token, "p0")
        return reply

    monkeypatch.setattr(client, "_list_reply", listing)
    listed = await client.list_tasks(token)
    # 3 + 3 + 2 (p6, and p0 again: stopped), each page asked from where the one before ended.
    assert len(pages) == 3 and all(limit == 3 for _, limit, _ in pages)
    assert [after for after, _, _ in pages] == [0, *(seq for _, _, seq in pages[:-1])]
    assert sorted(t.task_id for t in listed.tasks) == [f"p{i}" for i in range(7)]
    assert {t.task_id: t.status for t in listed.tasks}["p0"] == "STOPPED"
    assert listed.seq == pages[-1][2] == (await ask(token, 0.0, 0, 0)).seq
    await client.close()


async def test_an_unchanged_node_keeps_its_object_from_one_list_to_the_next(
    pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every holder of the node list (snapshot, monitor rows, alerts) then shares one object per node; and an
    unchanged node is not converted again (1,000 quiet nodes: 8.4 ms a refresh of the console's CPU)."""
    from hivemind_tui.services import nodepool_client

    converted: list[str] = []
    convert = nodepool_client.node_from_pb

    def counted(n: pb.NodeInfo) -> object:
        converted.append(n.node_id)
        return convert(n)

    monkeypatch.setattr(nodepool_client, "node_from_pb", counted)
    for node_id in ("n1", "n2"):
        await pool.nodes.RegisterWorkerNode(
            pb.RegisterWorkerNodeRequest(node_id=node_id, hostname=node_id, port=9, cpu_cores=4, memory_gb=8),
            metadata=pool.worker_metadata(node_id),
        )
    client = PoolClient(pool.settings, pool.address)
    session = Session(client, tmp_path / "t")
    await session.login("alice", PASSWORD)
    first = {n.node_id: n for n in (await session.call(client.list_nodes)).nodes}
    await pool.nodes.ReportStatus(
        pb.RunningStatusRequest(node_id="n2", status="Busy", cpu_usage=50.0), metadata=pool.worker_metadata("n2")
    )
    converted.clear()
    second = {n.node_id: n for n in (await session.call(client.list_nodes)).nodes}
    assert converted == ["n2"]
    assert second["n1"] is first["n1"]
    assert second["n2"] is not first["n2"] and second["n2"].cpu_usage == 50.0
    await client.close()


async def test_a_full_task_list_keeps_the_objects_of_unchanged_tasks(
    pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every refresh of the tasks screen keeps the row of a task whose object it saw before; the full list the
    monitor asks for now and then made every task a new object, and every row with it (with 1,800 tasks, all
    of them every 12 s, long-lived objects made again in a console meant to run for weeks)."""
    from hivemind_tui.services import monitor as monitor_module

    monkeypatch.setattr(monitor_module, "FULL_TASK_SYNC_EVERY", 1)  # every refresh lists everything
    client = PoolClient(pool.settings, pool.address)
    session = Session(client, tmp_path / "t")
    await session.login("alice", PASSWORD)
    for i in range(3):
        await client.upload_task(session.data.token, f"k{i}", task_zip())
    monitor = monitor_module.Monitor(pool.settings, session, None, None, None)
    first = (await monitor.refresh()).tasks
    await client.stop_task(session.data.token, "k1")
    second = (await monitor.refresh()).tasks
    assert second.by_id["k1"].status == "STOPPED" and second.by_id["k1"] is not first.by_id["k1"]
    assert second.by_id["k0"] is first.by_id["k0"] and second.by_id["k2"] is first.by_id["k2"]
    await client.close()
