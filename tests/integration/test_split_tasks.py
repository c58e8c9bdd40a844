"""Split tasks end to end: real pool, real worker, real task processes; aggregated results checked line for
line against running the same main.py on the whole input."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.helpers import free_port, make_zip
from tests.integration.cli_harness import CLI, admin_login, serve
from tests.proxy import FaultProxy

DP_MAIN = """
import csv, json, os
meta = json.load(open("hivemind-subtask.json")) if os.path.exists("hivemind-subtask.json") else {}
rows = list(csv.reader(open("data/in.csv")))
os.makedirs("output", exist_ok=True)
with open("output/result.csv", "w", newline="") as fh:
    out = csv.writer(fh)
    out.writerow(["id", "name", "square"])
    for row in rows[1:]:
        out.writerow([row[0], row[1].upper(), int(row[0]) ** 2])
"""
DP_MANIFEST = """
[task]
type = "data_processing"
priority = 2
[split]
input = "data/in.csv"
header = true
[merge]
concat = ["output/result.csv"]
"""


def run_whole(tmp_path: Path, files: dict[str, str]) -> dict[str, bytes]:
    """What main.py gives on the whole input, run here as one process."""
    work = tmp_path / "whole"
    for name, content in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content)
    subprocess.run([sys.executable, "main.py"], cwd=work, check=True, timeout=60)
    return {p.relative_to(work).as_posix(): p.read_bytes() for p in (work / "output").rglob("*") if p.is_file()}


def aggregated(cli: CLI, task_id: str, tmp_path: Path) -> zipfile.ZipFile:
    out = tmp_path / f"{task_id}.zip"
    doc = cli.json("tasks", "result", task_id, "--output", str(out))
    assert doc["aggregate"]["missing"] == [] and doc["aggregate"]["failed"] == []
    return zipfile.ZipFile(io.BytesIO(out.read_bytes()))


def test_data_processing_end_to_end(cli: CLI, tmp_path: Path) -> None:
    admin_login(cli)
    lines = "".join(f"{i},name{i}\n" for i in range(1, 301))
    files = {"main.py": DP_MAIN, "hivemind.toml": DP_MANIFEST, "data/in.csv": "id,name\n" + lines}
    zip_path = tmp_path / "dp.zip"
    zip_path.write_bytes(make_zip(files))
    dry = cli.json("tasks", "submit", str(zip_path), "--shards", "3", "--dry-run")
    assert dry["dry_run"] is True and dry["subtasks"] == [] and len(dry["plan"]) == 3
    assert {"index", "size_bytes", "lines", "params", "weight"} <= set(dry["plan"][0])
    assert sum(p["lines"] for p in dry["plan"]) == 300 + 3
    assert cli.json("tasks", "list")["tasks"] == []  # the dry run uploaded nothing
    done = cli.json("tasks", "submit", str(zip_path), "--shards", "3", "--wait")
    assert done["status"] == "COMPLETED" and len(done["subtasks"]) == 3 and done["dry_run"] is False
    parent = done["task_id"]
    (row,) = [r for r in cli.json("tasks", "list")["tasks"] if r["task_id"] == parent]
    assert row["progress"] == {"done": 3, "total": 3} and row["priority"] == 2
    shown = cli.json("tasks", "show", parent)
    assert [s["status"] for s in shown["subtasks"]] == ["COMPLETED"] * 3
    whole = run_whole(tmp_path, files)
    with aggregated(cli, parent, tmp_path) as zf:
        assert zf.read("output/result.csv").splitlines() == whole["output/result.csv"].splitlines()
        assert "subtask-0000/output/result.csv" in zf.namelist()
        summary = json.loads(zf.read("aggregate.json"))
        assert summary["completed"] == 3 and summary["total"] == 3


ML_MAIN = """
import json, os
params = json.load(open("hivemind-subtask.json"))["params"] if os.path.exists("hivemind-subtask.json") else None
combos = [params] if params else [{"depth": d, "lr": lr} for d in (1, 2) for lr in (0.5, 0.25)]
os.makedirs("output", exist_ok=True)
with open("output/scores.txt", "w") as fh:
    for p in combos:
        fh.write(f"{p['depth']},{p['lr']},{p['depth'] * p['lr']:.4f}\\n")
"""
ML_MANIFEST = (
    '[task]\ntype = "machine_learning"\n[split.grid]\nlr = [0.5, 0.25]\ndepth = [1, 2]\n'
    '[merge]\nconcat = ["output/scores.txt"]\n'
)
SIM_MAIN = """
import json, os
meta = json.load(open("hivemind-subtask.json")) if os.path.exists("hivemind-subtask.json") else None
ranges = [meta["params"]["runs"]] if meta else [[0, 1000]]
os.makedirs("output", exist_ok=True)
with open("output/sums.txt", "w") as fh:
    for low, high in ranges:
        fh.write(f"{sum(i * i for i in range(low, high))}\\n")
"""
SIM_MANIFEST = '[task]\ntype = "simulation"\n[split]\nruns = 1000\nshards = 4\n[merge]\nconcat = ["output/sums.txt"]\n'


def test_grid_and_simulation_end_to_end(cli: CLI, tmp_path: Path) -> None:
    admin_login(cli)
    ml_files = {"main.py": ML_MAIN, "hivemind.toml": ML_MANIFEST}
    (tmp_path / "ml.zip").write_bytes(make_zip(ml_files))
    ml = cli.json("tasks", "submit", str(tmp_path / "ml.zip"), "--wait")
    assert ml["status"] == "COMPLETED" and len(ml["subtasks"]) == 4
    with aggregated(cli, ml["task_id"], tmp_path) as zf:
        got = sorted(zf.read("output/scores.txt").decode().splitlines())
    assert got == sorted(run_whole(tmp_path / "ml", ml_files)["output/scores.txt"].decode().splitlines())
    sim_files = {"main.py": SIM_MAIN, "hivemind.toml": SIM_MANIFEST}
    (tmp_path / "sim.zip").write_bytes(make_zip(sim_files))
    sim = cli.json("tasks", "submit", str(tmp_path / "sim.zip"), "--wait")
    assert sim["status"] == "COMPLETED" and len(sim["subtasks"]) == 4
    with aggregated(cli, sim["task_id"], tmp_path) as zf:
        parts = [int(x) for x in zf.read("output/sums.txt").decode().split()]
    whole = int(run_whole(tmp_path / "sim", sim_files)["output/sums.txt"].decode())
    assert len(parts) == 4 and sum(parts) == whole


def test_failing_subtask_and_its_retry(cli: CLI, tmp_path: Path) -> None:
    admin_login(cli)
    main = (
        "import os, sys\nif os.environ['HIVEMIND_TASK_ID'].endswith('.0001'):\n    sys.exit('shard one breaks')\n"
        "os.makedirs('output', exist_ok=True)\nopen('output/r.txt', 'w').write(open('data/in.csv').read())\n"
    )
    files = {
        "main.py": main,
        "hivemind.toml": DP_MANIFEST.replace("header = true", "header = false").replace(
            "output/result.csv", "output/r.txt"
        ),
        "data/in.csv": "".join(f"{i}\n" for i in range(30)),
    }
    (tmp_path / "f.zip").write_bytes(make_zip(files))
    failed = cli("tasks", "submit", str(tmp_path / "f.zip"), "--shards", "3", "--wait", "--json")
    doc = json.loads(failed.stdout)
    assert failed.returncode == 1 and doc["status"] == "FAILED"
    parent = doc["task_id"]
    (row,) = [r for r in cli.json("tasks", "list")["tasks"] if r["task_id"] == parent]
    assert row["progress"] == {"done": 2, "total": 3} and "1 of 3 subtasks failed" in row["message"]
    partial = tmp_path / "partial.zip"
    summary = cli.json("tasks", "result", parent, "--output", str(partial), "--partial")["aggregate"]
    assert summary["failed"] == [f"{parent}.0001"] and summary["completed"] == 2
    retried = cli.json("tasks", "retry", parent)
    assert retried["resubmitted"] == [f"{parent}.0001.r1"]
    deadline = time.monotonic() + 60
    while True:
        (row,) = [r for r in cli.json("tasks", "list")["tasks"] if r["task_id"] == parent]
        if row["status"] == "COMPLETED":
            break
        assert time.monotonic() < deadline, row
        time.sleep(0.3)
    # The replaced subtask stays the parent's: it is not listed as a task of its own.
    assert [r["task_id"] for r in cli.json("tasks", "list")["tasks"]] == [parent]
    with aggregated(cli, parent, tmp_path) as zf:
        assert zf.read("output/r.txt").decode().split() == [str(i) for i in range(30)]


def test_resume_after_a_crash_between_uploads(cli: CLI, tmp_path: Path) -> None:
    """The submit is killed mid-way (uploads slowed by a proxy); `resume` sends the rest, none twice."""
    admin_login(cli)
    proxied = CLI(cli.data)
    lines = "".join(f"{i:06d},{'z' * 200}\n" for i in range(20000))
    files = {"main.py": "print('ok')", "hivemind.toml": DP_MANIFEST, "data/in.csv": "id,name\n" + lines}
    (tmp_path / "r.zip").write_bytes(make_zip(files))

    async def scenario() -> None:
        proxy = await FaultProxy(cli.port).start()  # type: ignore[attr-defined]
        try:
            password = (cli.data / "pool" / "admin-password").read_text().strip()
            login = await asyncio.to_thread(
                proxied, "--pool", proxy.address, "login", "--user", "admin", "--password-stdin", stdin=password + "\n"
            )
            assert login.returncode == 0, login.stderr
            proxy.mode, proxy.delay = "delay", 0.05
            env_cmd = [
                sys.executable,
                "-m",
                "hivemind_tui",
                "--data-dir",
                str(cli.data),
                "--pool",
                proxy.address,
                "tasks",
                "submit",
                str(tmp_path / "r.zip"),
                "--shards",
                "12",
            ]
            import os

            proc = subprocess.Popen(
                env_cmd,
                env={**os.environ, "HIVEMIND_UPLOAD_CONCURRENCY": "1", "HIVEMIND_PASSWORD_HASH_COST": "min"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 60
            while True:
                sent = _uploaded(cli.data)
                if sent is not None and 1 <= sent[0] < sent[1]:
                    break
                assert time.monotonic() < deadline and proc.poll() is None
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proxy.mode = "pass"
            before = _uploaded(cli.data)
            assert before is not None and before[0] < before[1] == 12
            resumed = await asyncio.to_thread(proxied, "--pool", proxy.address, "tasks", "resume", "--json")
            assert resumed.returncode == 0, resumed.stderr
            assert len(json.loads(resumed.stdout)["resumed"]) == 1
            assert _uploaded(cli.data) == (12, 12)
            again = await asyncio.to_thread(proxied, "--pool", proxy.address, "tasks", "resume", "--json")
            assert json.loads(again.stdout)["resumed"] == []
        finally:
            await proxy.close()

    asyncio.run(scenario())
    pool_log = (cli.data / "logs" / "pool.log").read_text()
    with sqlite3.connect(cli.data / "console.db") as db:
        parent = db.execute("SELECT parent_id FROM parents").fetchone()[0]
    uploads = [line for line in pool_log.splitlines() if f"task {parent}." in line and " uploaded by " in line]
    assert len(uploads) == 12  # every subtask reached the pool exactly once


def _uploaded(data: Path) -> tuple[int, int] | None:
    try:
        with sqlite3.connect(data / "console.db") as db:
            row = db.execute("SELECT SUM(uploaded), COUNT(*) FROM subtasks").fetchone()
    except sqlite3.Error:
        return None
    return None if row[1] == 0 else (int(row[0] or 0), int(row[1]))


def test_submit_errors(cli: CLI, tmp_path: Path) -> None:
    admin_login(cli)
    assert cli.json("tasks", "submit", str(tmp_path / "missing.zip"), code=2)["error"]["code"] == "USAGE"
    (tmp_path / "bad.zip").write_bytes(make_zip({"main.py": "", "hivemind.toml": "[task]\ntype = 3\n"}))
    err = cli.json("tasks", "submit", str(tmp_path / "bad.zip"), code=2)["error"]
    assert err["code"] == "BAD_MANIFEST" and "task.type" in err["message"]
    (tmp_path / "evil.zip").write_bytes(make_zip({"main.py": "", "../../x": "y"}))
    assert cli.json("tasks", "submit", str(tmp_path / "evil.zip"), code=2)["error"]["code"] == "BAD_TASK"
    assert cli.json("tasks", "submit", str(tmp_path / "evil.zip"), "--shards", "0", code=2)
    plain = tmp_path / "plain.zip"
    plain.write_bytes(make_zip({"main.py": "print(1)"}))
    assert cli.json("--readonly", "tasks", "submit", str(plain), code=5)["error"]["code"] == "PERMISSION_DENIED"
    with sqlite3.connect(cli.data / "console.db") as db:
        assert db.execute("SELECT COUNT(*) FROM parents").fetchone()[0] == 0
    done = cli.json("tasks", "submit", str(plain), "--wait")
    assert done["status"] == "COMPLETED" and done["subtasks"] == []
    (row,) = cli.json("tasks", "list")["tasks"]
    assert row["task_id"] == done["task_id"] and row["progress"] == {"done": 1, "total": 1}


def test_submits_that_would_be_refused_change_nothing(cli: CLI, tmp_path: Path) -> None:
    """Too many subtasks, or a value the pool refuses: a clear error before anything is recorded or sent."""
    admin_login(cli)
    grid = "".join(f"p{n} = [{', '.join(str(v) for v in range(100))}]\n" for n in range(6))
    cases = {
        "grid.zip": ('[task]\ntype = "machine_learning"\n[split.grid]\n' + grid, (), "1000000000000 subtasks"),
        "sim.zip": ('[task]\ntype = "simulation"\n[split]\nruns = 1000000\nshards = 100000\n', (), "100000 subtasks"),
        "far.zip": ("", ("--location", "x" * 5000), "location must be at most 256"),
        "urgent.zip": ("", ("--priority", "5000"), "priority must be from -1000 to 1000"),
    }
    for name, (manifest, flags, words) in cases.items():
        files = {"main.py": "print(1)", **({"hivemind.toml": manifest} if manifest else {})}
        (tmp_path / name).write_bytes(make_zip(files))
        err = cli.json("tasks", "submit", str(tmp_path / name), *flags, code=2)["error"]
        assert words in err["message"], (name, err)
    assert cli.json("tasks", "list")["tasks"] == []
    assert not list((cli.data / "staging").glob("*/*"))
    with sqlite3.connect(cli.data / "console.db") as db:
        assert db.execute("SELECT COUNT(*) FROM parents").fetchone()[0] == 0


def test_a_subtask_the_pool_refuses_for_good_fails_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool takes less than this client believes (1 MiB against 64): TOO_LARGE is final, not retried."""
    import os

    data = tmp_path / "data"
    monkeypatch.setenv("HIVEMIND_MAX_UPLOAD_BYTES", str(1 << 20))
    proc = serve(data, port := free_port())
    monkeypatch.setenv("HIVEMIND_MAX_UPLOAD_BYTES", str(64 << 20))
    cli = CLI(data)
    try:
        admin_login(cli)
        big = tmp_path / "big.zip"
        big.write_bytes(make_zip({"main.py": "print(1)", "blob.bin": os.urandom(2 << 20)}, zipfile.ZIP_STORED))
        err = cli.json("--pool", f"127.0.0.1:{port}", "tasks", "submit", str(big), code=1)["error"]
        assert err["code"] == "REFUSED" and "TOO_LARGE" in err["message"]
        (row,) = cli.json("--pool", f"127.0.0.1:{port}", "tasks", "list")["tasks"]
        assert row["status"] == "FAILED"
        assert cli.json("--pool", f"127.0.0.1:{port}", "tasks", "resume")["resumed"] == []
    finally:
        cli("pool", "stop")
        proc.wait(timeout=20)


def test_stopping_a_big_parent_goes_in_batches_with_progress(cli: CLI, tmp_path: Path) -> None:
    admin_login(cli)
    job = tmp_path / "many.zip"
    manifest = '[task]\ntype = "simulation"\n[split]\nruns = 1200\nshards = 1200\n'
    job.write_bytes(make_zip({"main.py": "print(1)", "hivemind.toml": manifest}))
    parent = cli.json("tasks", "submit", str(job), "--memory-gb", "100000")["task_id"]  # stays PENDING
    proc = cli("tasks", "stop", parent, "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["stopped"]) == 1200
    progress = proc.stderr.strip().splitlines()
    assert progress == [f"stopping {parent}: {n}/1200" for n in (500, 1000, 1200)]
    statuses = {s["status"] for s in cli.json("tasks", "show", parent)["subtasks"]}
    assert statuses == {"STOPPED"}


def test_results_of_unfinished_tasks_are_refused_and_nothing_is_written(cli: CLI, tmp_path: Path) -> None:
    admin_login(cli)
    waiting = tmp_path / "waiting.zip"
    waiting.write_bytes(make_zip({"main.py": "print(1)"}))
    plain = cli.json("tasks", "submit", str(waiting), "--memory-gb", "100000")["task_id"]
    out = tmp_path / "r.zip"
    for task_id, words in ((plain, "PENDING"), ("no-such-task", "not known to the pool")):
        err = cli.json("tasks", "result", task_id, "--output", str(out), code=1)["error"]
        assert words in err["message"], err
        assert not out.exists()
    cli.json("tasks", "stop", plain)
    assert "STOPPED" in cli.json("tasks", "result", plain, "--output", str(out), code=1)["error"]["message"]
    assert not out.exists()

    # A parent with one subtask failing: refused whole, written in part with --partial.
    job = tmp_path / "half.zip"
    main = (
        "import json, os, sys\n"
        "meta = json.load(open('hivemind-subtask.json'))\n"
        "os.makedirs('output', exist_ok=True)\n"
        "open('output/o.txt', 'w').write(str(meta['index']) + '\\n')\n"
        "sys.exit(3 if meta['index'] == 1 else 0)\n"
    )
    manifest = '[task]\ntype = "simulation"\n[split]\nruns = 3\nshards = 3\n[merge]\nconcat = ["output/o.txt"]\n'
    job.write_bytes(make_zip({"main.py": main, "hivemind.toml": manifest}))
    parent = cli.json("tasks", "submit", str(job), "--wait", code=1)["task_id"]
    err = cli.json("tasks", "result", parent, "--output", str(out), code=1)["error"]
    assert "2 of 3 subtasks completed" in err["message"] and "--partial" in err["message"]
    assert not out.exists()
    done = cli.json("tasks", "result", parent, "--output", str(out), "--partial")
    assert done["aggregate"]["completed"] == 2 and done["aggregate"]["failed"] == [f"{parent}.0001"]
    with zipfile.ZipFile(out) as zf:
        assert zf.read("output/o.txt").decode().split() == ["0", "2"]


HALF_FAILING_MAIN = (
    "import json, os, sys\n"
    "meta = json.load(open('hivemind-subtask.json'))\n"
    "os.makedirs('output', exist_ok=True)\n"
    "open('output/o.txt', 'w').write(str(meta['index']) + '\\n')\n"
    "sys.exit(3 if meta['index'] == 1 else 0)\n"
)


def test_staged_zips_go_once_completed_and_prune_bounds_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIVEMIND_RETENTION_DAYS", "0.00001")  # under a second: finished parents age at once
    data = tmp_path / "data"
    proc = serve(data, port := free_port())
    cli = CLI(data)
    try:
        admin_login(cli)
        job = tmp_path / "half.zip"
        manifest = '[task]\ntype = "simulation"\n[split]\nruns = 3\nshards = 3\n'
        job.write_bytes(make_zip({"main.py": HALF_FAILING_MAIN, "hivemind.toml": manifest}))
        parent = cli.json("--pool", f"127.0.0.1:{port}", "tasks", "submit", str(job), "--wait", code=1)["task_id"]
        cli.json("--pool", f"127.0.0.1:{port}", "tasks", "list")
        # Only the failed subtask's zip is kept: `tasks retry` needs it.
        assert sorted(p.name for p in (data / "staging" / parent).iterdir()) == ["0001.zip"]
        deadline = time.monotonic() + 30
        total = {"parents": 0, "subtasks": 0, "audit": 0, "alerts": 0}
        while total["parents"] == 0:
            assert time.monotonic() < deadline, total
            pruned = cli.json("prune")
            total = {k: v + pruned[k] for k, v in total.items()}
        assert total["parents"] == 1 and total["subtasks"] == 3 and total["audit"] >= 1
        assert not (data / "staging" / parent).exists()
    finally:
        cli("pool", "stop")
        proc.wait(timeout=20)
