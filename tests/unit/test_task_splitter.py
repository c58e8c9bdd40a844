"""The splitter on its own: line cuts, headers, weights, grids, ranges, limits, manifests, bad zips."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import pytest

from hivemind_tui.core.zipsafe import ZipLimits
from hivemind_tui.services.manifest import ManifestError, parse_manifest
from hivemind_tui.services.models import NodeInfo, NodeList
from hivemind_tui.services.task_splitter import (
    SUBTASK_FILE,
    SplitError,
    plan_weights,
    read_task,
    split_task,
)
from tests.helpers import make_zip

LIMITS = ZipLimits(1 << 30, 200)
BIG = 1 << 30


def write_zip(tmp_path: Path, files: dict[str, str | bytes], name: str = "job.zip") -> Path:
    path = tmp_path / name
    path.write_bytes(make_zip(files))
    return path


def dp_manifest(header: bool = False, shards: int | None = None) -> str:
    text = '[task]\ntype = "data_processing"\n[split]\ninput = "data/in.csv"\n'
    text += f"header = {'true' if header else 'false'}\n"
    return text + (f"shards = {shards}\n" if shards else "")


def shard_texts(plan_subtasks: list) -> list[str]:
    texts = []
    for sub in plan_subtasks:
        with zipfile.ZipFile(sub.path) as zf:
            texts.append(zf.read("data/in.csv").decode())
    return texts


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 16])
@pytest.mark.parametrize("header", [False, True])
def test_lines_are_cut_on_boundaries_and_nothing_is_lost(tmp_path: Path, shards: int, header: bool) -> None:
    rng = random.Random(shards)
    lines = [f"{i},{'x' * rng.randint(0, 40)}\n" for i in range(1000)]
    text = ("id,data\n" if header else "") + "".join(lines)
    zip_path = write_zip(
        tmp_path,
        {"main.py": "print(1)", "hivemind.toml": dp_manifest(header), "data/in.csv": text, "lib/util.py": "X = 1"},
    )
    manifest = read_task(zip_path, LIMITS)
    plan = split_task(zip_path, tmp_path / "out", manifest, shards, None, BIG, "p-1", LIMITS)
    texts = shard_texts(plan.subtasks)
    assert len(texts) == shards
    if header:
        assert all(t.startswith("id,data\n") for t in texts)
        texts = [t.removeprefix("id,data\n") for t in texts]
    assert "".join(texts) == "".join(lines)
    assert all(t.endswith("\n") for t in texts if t)
    assert sum(s.lines for s in plan.subtasks) == 1000 + (shards if header else 0)
    sizes = [len(t) for t in texts]
    assert max(sizes) - min(sizes) < 200  # equal weights: shards of about the same size
    with zipfile.ZipFile(plan.subtasks[-1].path) as zf:
        meta = json.loads(zf.read(SUBTASK_FILE))
        assert zf.read("lib/util.py") == b"X = 1" and zf.read("main.py") == b"print(1)"
    assert meta == {
        "index": shards - 1,
        "total": shards,
        "parent_task_id": "p-1",
        "params": {"shard": shards - 1, "input": "data/in.csv"},
        "task_type": "data_processing",
    }


def test_weights_follow_free_slots_and_cpu_score() -> None:
    nodes = NodeList(
        True,
        [
            NodeInfo("fast", online=True, slots=2, cpu_score=300),
            NodeInfo("slow", online=True, slots=1, cpu_score=100),
            NodeInfo("down", online=False, slots=8, cpu_score=900),
            NodeInfo("cord", online=True, slots=8, cpu_score=900, state="cordoned"),
        ],
    )
    assert plan_weights(3, nodes) == pytest.approx([3 / 7, 3 / 7, 1 / 7])
    assert plan_weights(4, NodeList(False)) == [0.25] * 4


def test_weighted_cut_sizes(tmp_path: Path) -> None:
    text = "".join(f"{i:09d}\n" for i in range(10000))
    zip_path = write_zip(tmp_path, {"main.py": "", "hivemind.toml": dp_manifest(), "data/in.csv": text})
    nodes = NodeList(
        True, [NodeInfo("a", online=True, slots=1, cpu_score=300), NodeInfo("b", online=True, slots=1, cpu_score=100)]
    )
    plan = split_task(zip_path, tmp_path / "o", read_task(zip_path, LIMITS), None, nodes, BIG, "p", LIMITS)
    assert [s.lines for s in plan.subtasks] == [7500, 2500]


def test_more_shards_than_lines_and_empty_input(tmp_path: Path) -> None:
    zip_path = write_zip(tmp_path, {"main.py": "", "hivemind.toml": dp_manifest(), "data/in.csv": "a\nb\nc\n"})
    plan = split_task(zip_path, tmp_path / "o", read_task(zip_path, LIMITS), 8, None, BIG, "p", LIMITS)
    assert [s.lines for s in plan.subtasks] == [1, 1, 1] and "only enough lines for 3" in plan.notes[0]
    assert "".join(shard_texts(plan.subtasks)) == "a\nb\nc\n"
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["0000.zip", "0001.zip", "0002.zip"]
    with zipfile.ZipFile(plan.subtasks[2].path) as zf:
        assert json.loads(zf.read(SUBTASK_FILE))["index"] == 2
    empty = write_zip(tmp_path, {"main.py": "", "hivemind.toml": dp_manifest(), "data/in.csv": ""}, "e.zip")
    plan = split_task(empty, tmp_path / "e", read_task(empty, LIMITS), 4, None, BIG, "p", LIMITS)
    assert len(plan.subtasks) == 1 and "empty" in plan.notes[-1]


def test_grid_and_cap(tmp_path: Path) -> None:
    manifest = (
        '[task]\ntype = "machine_learning"\n[split]\nmax_subtasks = 5\n[split.grid]\nlr = [0.1, 0.01]\n'
        "depth = [1, 2, 3]\n"
    )
    zip_path = write_zip(tmp_path, {"main.py": "", "hivemind.toml": manifest})
    plan = split_task(zip_path, tmp_path / "o", read_task(zip_path, LIMITS), None, None, BIG, "p", LIMITS)
    assert [s.params for s in plan.subtasks] == [
        {"depth": 1, "lr": 0.1},
        {"depth": 1, "lr": 0.01},
        {"depth": 2, "lr": 0.1},
        {"depth": 2, "lr": 0.01},
        {"depth": 3, "lr": 0.1},
    ]
    assert "capped: 5 of 6" in plan.notes[0]


def test_runs_and_seeds(tmp_path: Path) -> None:
    runs = write_zip(tmp_path, {"main.py": "", "hivemind.toml": '[task]\ntype="simulation"\n[split]\nruns=10\n'})
    plan = split_task(runs, tmp_path / "r", read_task(runs, LIMITS), 3, None, BIG, "p", LIMITS)
    assert [s.params for s in plan.subtasks] == [{"runs": [0, 3]}, {"runs": [3, 6]}, {"runs": [6, 10]}]
    seeds = write_zip(
        tmp_path, {"main.py": "", "hivemind.toml": '[task]\ntype="simulation"\n[split]\nseeds=[5, 6]\n'}, "s.zip"
    )
    plan = split_task(seeds, tmp_path / "s", read_task(seeds, LIMITS), 4, None, BIG, "p", LIMITS)
    assert [s.params for s in plan.subtasks] == [{"seeds": [5, 5]}, {"seeds": [6, 6]}]


def test_other_types_are_one_task(tmp_path: Path) -> None:
    zip_path = write_zip(tmp_path, {"main.py": "print(1)"})
    plan = split_task(zip_path, tmp_path / "o", read_task(zip_path, LIMITS), 8, None, BIG, "p", LIMITS)
    assert len(plan.subtasks) == 1 and plan.subtasks[0].path == zip_path and not plan.split


def test_limit_proposes_more_shards(tmp_path: Path) -> None:
    text = "".join(f"{random.random()}\n" for _ in range(40000))
    zip_path = write_zip(tmp_path, {"main.py": "", "hivemind.toml": dp_manifest(), "data/in.csv": text})
    plan = split_task(zip_path, tmp_path / "o", read_task(zip_path, LIMITS), 2, None, 200 * 1024, "p", LIMITS)
    assert not plan.ok and plan.proposed_shards and plan.proposed_shards > 2
    again = split_task(
        zip_path, tmp_path / "o2", read_task(zip_path, LIMITS), plan.proposed_shards, None, 200 * 1024, "p", LIMITS
    )
    assert again.ok


@pytest.mark.parametrize(
    ("manifest", "key"),
    [
        ("[task]\ntype = 5\n", "task.type"),
        ('[task]\npriority = "high"\n', "task.priority"),
        ('[task]\ntype = "data_processing"\n', "split.input"),
        ('[task]\ntype = "data_processing"\n[split]\ninput = "../x"\n', "split.input"),
        ('[task]\ntype = "data_processing"\n[split]\ninput = "a"\nshards = 0\n', "split.shards"),
        ('[task]\ntype = "data_processing"\n[split]\ninput = "a"\nheader = "yes"\n', "split.header"),
        ('[task]\ntype = "machine_learning"\n', "split.grid"),
        ('[task]\ntype = "machine_learning"\n[split.grid]\nlr = []\n', "split.grid.lr"),
        ('[task]\ntype = "simulation"\n', "split.runs"),
        ('[task]\ntype = "simulation"\n[split]\nseeds = [9, 1]\n', "split.seeds"),
        ('[merge]\nconcat = "x"\n', "merge.concat"),
        ("[resources]\nmemory_gb = -1\n", "resources.memory_gb"),
        ('[task]\ncolour = "red"\n', "task.colour"),
        ('[tasks]\ntype = "x"\n', "tasks"),
        ("[task\n", "not valid TOML"),
    ],
)
def test_bad_manifests_name_the_key(manifest: str, key: str) -> None:
    with pytest.raises(ManifestError) as err:
        parse_manifest(manifest)
    assert key in str(err.value) and err.value.exit_code == 2


def test_missing_input_and_bad_zips(tmp_path: Path) -> None:
    zip_path = write_zip(tmp_path, {"main.py": "", "hivemind.toml": dp_manifest()})
    with pytest.raises(SplitError, match="not in the zip"):
        split_task(zip_path, tmp_path / "o", read_task(zip_path, LIMITS), 2, None, BIG, "p", LIMITS)
    for name, files in {
        "nomain": {"x.py": ""},
        "dotdot": {"main.py": "", "../up": "x"},
        "abs": {"main.py": "", "/etc/x": "y"},
    }.items():
        with pytest.raises(SplitError):
            read_task(write_zip(tmp_path, files, f"{name}.zip"), LIMITS)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(SplitError, match="not a valid zip"):
        read_task(tmp_path / "junk.zip", LIMITS)
    bomb = write_zip(tmp_path, {"main.py": "", "z": b"\0" * (8 << 20)}, "bomb.zip")
    with pytest.raises(SplitError, match="zip bomb"):
        read_task(bomb, LIMITS)


def huge_grid(tmp_path: Path, cap: int | None = None) -> Path:
    grid = "".join(f"p{n} = [{', '.join(str(v) for v in range(100))}]\n" for n in range(6))
    split = f"[split]\nmax_subtasks = {cap}\n" if cap else ""
    manifest = f'[task]\ntype = "machine_learning"\n{split}[split.grid]\n{grid}'
    return write_zip(tmp_path, {"main.py": "", "hivemind.toml": manifest})


def test_a_huge_grid_is_refused_from_its_size_alone(tmp_path: Path) -> None:
    """6 parameters x 100 values: 10^12 combinations are counted, never made."""
    import tracemalloc

    zip_path = huge_grid(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(SplitError, match=r"1000000000000 subtasks.*at most 10000"):
            split_task(zip_path, tmp_path / "o", read_task(zip_path, LIMITS), None, None, BIG, "p", LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024 * 1024
    assert not (tmp_path / "o").exists()


def test_a_capped_huge_grid_streams_its_first_combinations(tmp_path: Path) -> None:
    zip_path = huge_grid(tmp_path, cap=30)
    plan = split_task(zip_path, tmp_path / "o", read_task(zip_path, LIMITS), None, None, BIG, "p", LIMITS)
    assert len(plan.subtasks) == 30 and plan.subtasks[1].params == {f"p{n}": int(n == 5) for n in range(6)}
    assert "30 of 1000000000000 combinations" in plan.notes[0]


@pytest.mark.parametrize(
    ("manifest", "shards", "count"),
    [
        ('[task]\ntype = "simulation"\n[split]\nruns = 1000000\nshards = 100000\n', None, 100000),
        ('[task]\ntype = "simulation"\n[split]\nruns = 1000000\n', 20000, 20000),
        (dp_manifest(), 10001, 10001),
    ],
)
def test_more_subtasks_than_max_subtasks_is_refused_before_anything_is_written(
    tmp_path: Path, manifest: str, shards: int | None, count: int
) -> None:
    zip_path = write_zip(tmp_path, {"main.py": "", "hivemind.toml": manifest, "data/in.csv": "a\nb\n"})
    with pytest.raises(SplitError, match=f"{count} subtasks"):
        split_task(zip_path, tmp_path / "o", read_task(zip_path, LIMITS), shards, None, BIG, "p", LIMITS)
    assert not (tmp_path / "o").exists()
    plan = split_task(
        zip_path, tmp_path / "ok", read_task(zip_path, LIMITS), 3, None, BIG, "p", LIMITS, max_subtasks=count
    )
    assert len(plan.subtasks) <= 3
