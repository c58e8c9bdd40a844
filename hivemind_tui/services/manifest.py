"""`hivemind.toml`, the manifest of a task zip: how to split it, how to merge results, what it needs.

Every error names the key and what is allowed (exit code 2 on the command line). Keys:

    [task]       type (data_processing | machine_learning | simulation | anything else: not split), priority
    [split]      input, header, shards; grid (table of lists), max_subtasks; runs or seeds = [first, last]
    [merge]      concat = [paths of line-oriented outputs to concatenate in shard order]
    [resources]  memory_gb, cpu_score, gpu_score, gpu_memory_gb, location, gpu_name
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

from hivemind_tui.core.errors import UsageError
from hivemind_tui.core.task_rules import PRIORITY_MAX, PRIORITY_MIN

MANIFEST = "hivemind.toml"
SPLIT_TYPES = ("data_processing", "machine_learning", "simulation")
RESOURCE_INTS = ("memory_gb", "cpu_score", "gpu_score", "gpu_memory_gb")
RESOURCE_TEXTS = ("location", "gpu_name")
KNOWN = {
    "task": {"type", "priority"},
    "split": {"input", "header", "shards", "grid", "max_subtasks", "runs", "seeds"},
    "merge": {"concat"},
    "resources": {*RESOURCE_INTS, *RESOURCE_TEXTS},
}


class ManifestError(UsageError):
    code = "BAD_MANIFEST"


@dataclass(frozen=True)
class Manifest:
    task_type: str = "other"
    priority: int = 0
    input: str = ""
    header: bool = False
    shards: int | None = None
    grid: dict[str, list[Any]] = field(default_factory=dict)
    max_subtasks: int | None = None
    runs: int | None = None
    seeds: tuple[int, int] | None = None
    concat: tuple[str, ...] = ()
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def splits(self) -> bool:
        return self.task_type in SPLIT_TYPES


def _fail(key: str, allowed: str) -> ManifestError:
    return ManifestError(f"{MANIFEST}: {key}: expected {allowed}")


def _int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(key, f"a whole number of at least {minimum}")
    return value


def _path(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(key, "a path inside the zip, such as data/input.csv")
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        raise _fail(key, "a relative path inside the zip without '..'")
    return str(path)


def parse_manifest(text: str | None) -> Manifest:
    """Parse and check a manifest; None (no manifest) gives a plain, unsplit task."""
    if text is None:
        return Manifest()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{MANIFEST}: not valid TOML ({exc})") from None
    for section, value in data.items():
        if section not in KNOWN or not isinstance(value, dict):
            raise _fail(section, "the tables [task], [split], [merge] and [resources]")
        for key in value:
            if key not in KNOWN[section]:
                raise _fail(f"{section}.{key}", "one of " + ", ".join(sorted(KNOWN[section])))
    task, split = data.get("task", {}), data.get("split", {})
    merge, res = data.get("merge", {}), data.get("resources", {})
    task_type = task.get("type", "other")
    if not isinstance(task_type, str) or not task_type:
        raise _fail("task.type", "a string: data_processing, machine_learning, simulation or another name")
    priority = task.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise _fail("task.priority", f"a whole number from {PRIORITY_MIN} to {PRIORITY_MAX}")
    header = split.get("header", False)
    if not isinstance(header, bool):
        raise _fail("split.header", "true or false")
    shards = _int(split["shards"], "split.shards", 1) if "shards" in split else None
    manifest = Manifest(
        task_type=task_type,
        priority=priority,
        header=header,
        shards=shards,
        concat=_concat(merge),
        resources=_resources(res),
    )
    if task_type == "data_processing":
        if "input" not in split:
            raise _fail("split.input", "the path of the line-oriented file to cut (data_processing needs it)")
        return replace(manifest, input=_path(split["input"], "split.input"))
    if task_type == "machine_learning":
        return replace(
            manifest,
            grid=_grid(split.get("grid")),
            max_subtasks=_int(split["max_subtasks"], "split.max_subtasks", 1) if "max_subtasks" in split else None,
        )
    if task_type == "simulation":
        return replace(manifest, **_runs(split))
    return manifest


def _grid(grid: Any) -> dict[str, list[Any]]:
    if not isinstance(grid, dict) or not grid:
        raise _fail("split.grid", "a table with one list of values per parameter, e.g. lr = [0.1, 0.01]")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise _fail(f"split.grid.{name}", "a non-empty list of values")
    return {name: list(values) for name, values in grid.items()}


def _runs(split: dict[str, Any]) -> dict[str, Any]:
    if ("runs" in split) == ("seeds" in split):
        raise _fail("split.runs", "either runs = N or seeds = [first, last] (simulation needs one of them)")
    if "runs" in split:
        return {"runs": _int(split["runs"], "split.runs", 1)}
    seeds = split["seeds"]
    if (
        not isinstance(seeds, list)
        or len(seeds) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        or seeds[0] > seeds[1]
    ):
        raise _fail("split.seeds", "[first, last], two whole numbers with first <= last")
    return {"seeds": (seeds[0], seeds[1])}


def _concat(merge: dict[str, Any]) -> tuple[str, ...]:
    concat = merge.get("concat", [])
    if not isinstance(concat, list):
        raise _fail("merge.concat", 'a list of output paths, such as ["output/result.csv"]')
    return tuple(_path(p, "merge.concat") for p in concat)


def _resources(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in RESOURCE_INTS:
        if key in res:
            out[key] = _int(res[key], f"resources.{key}", 0)
    for key in RESOURCE_TEXTS:
        if key in res:
            if not isinstance(res[key], str):
                raise _fail(f"resources.{key}", "a string")
            out[key] = res[key]
    return out
