"""The task splitter: one task zip in, subtask zips out, each fitting the pool's receive limit.

- data_processing: the input file is streamed out of the zip and cut at line boundaries into shards whose
  sizes follow the weights (an optional header line repeated in each); never held whole in memory.
- machine_learning: one subtask per combination of the parameter grid (optionally capped).
- simulation: a range of runs or seeds cut into chunks.
- anything else: one task, unchanged.
Each subtask zip holds the code (every member but the input), its shard or params, and
`hivemind-subtask.json` (index, total, parent id, params). The dry run is the same split into a temp
folder that is then removed, so its sizes are exact.
"""

from __future__ import annotations

import itertools
import json
import math
import secrets
import shutil
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from hivemind_tui.core.datadir import create_private_file, make_private_dir
from hivemind_tui.core.errors import UsageError
from hivemind_tui.core.zipsafe import ZipLimits, ZipRejected, check_zip
from hivemind_tui.services.manifest import MANIFEST, Manifest, parse_manifest
from hivemind_tui.services.models import NodeList

SUBTASK_FILE = "hivemind-subtask.json"
CHUNK = 1024 * 1024
UPLOAD_MARGIN = 64 * 1024
DEFAULT_SHARDS = 4


class SplitError(UsageError):
    code = "BAD_TASK"


@dataclass(frozen=True)
class SubtaskPlan:
    index: int
    size_bytes: int
    lines: int | None
    params: dict[str, Any] | None
    weight: float
    path: Path | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "size_bytes": self.size_bytes,
            "lines": self.lines,
            "params": self.params,
            "weight": round(self.weight, 6),
        }


@dataclass
class SplitPlan:
    parent_id: str
    task_type: str
    manifest: Manifest
    subtasks: list[SubtaskPlan]
    limit_bytes: int
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    proposed_shards: int | None = None

    @property
    def split(self) -> bool:
        return self.manifest.splits

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ShardInfo:
    path: Path
    size_bytes: int


def new_task_id(zip_path: Path) -> str:
    """A readable prefix from the file name plus random characters, so ids rarely collide."""
    stem = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "-" for c in zip_path.stem)
    stem = stem[:40].strip("-_") or "task"
    return f"{stem}-{secrets.token_hex(3)}"


def read_task(zip_path: Path, limits: ZipLimits) -> Manifest:
    """Check the zip (main.py at the root, nothing unsafe) and read its manifest."""
    try:
        members = check_zip(zip_path, limits, require_main=True)
    except ZipRejected as exc:
        raise SplitError(f"{zip_path.name}: {exc}") from None
    if not any(m.filename == MANIFEST for m in members):
        return parse_manifest(None)
    with zipfile.ZipFile(zip_path) as zf:
        try:
            text = zf.read(MANIFEST).decode("utf-8")
        except UnicodeDecodeError:
            raise SplitError(f"{MANIFEST} is not UTF-8 text") from None
    return parse_manifest(text)


def free_slots(nodes: NodeList | None) -> list[int]:
    """CPU scores of every free slot on online, active nodes (one entry per slot)."""
    if nodes is None or not nodes.supported:
        return []
    slots = []
    for node in nodes.nodes:
        if node.online and node.state == "active":
            slots += [max(node.cpu_score, 1)] * max(node.slots - node.running_tasks, 0)
    return slots


def plan_weights(count: int, nodes: NodeList | None) -> list[float]:
    """Weights proportional to free slots x CPU score where the pool lists nodes; equal otherwise."""
    scores = sorted(free_slots(nodes), reverse=True)
    if not scores:
        return [1.0 / count] * count
    picked = [scores[i % len(scores)] for i in range(count)]
    total = float(sum(picked))
    return [s / total for s in picked]


def default_shard_count(nodes: NodeList | None) -> int:
    return len(free_slots(nodes)) or DEFAULT_SHARDS


def split_task(
    zip_path: Path,
    out_dir: Path,
    manifest: Manifest,
    shards: int | None,
    nodes: NodeList | None,
    limit_bytes: int,
    parent_id: str,
    limits: ZipLimits,
    store_shards: bool = True,
    max_subtasks: int = 10_000,
) -> SplitPlan:
    """Write the subtask zips into `out_dir` and return the plan (sizes, weights, limit problems).

    The number of subtasks is counted first (a grid from its parameters' lengths, never by making its
    combinations), and more than `max_subtasks` is refused before anything is written.
    """
    count = shards or manifest.shards or default_shard_count(nodes)
    made = subtask_count(manifest, count)
    if made > max_subtasks:
        raise SplitError(
            f"this would make {made} subtasks; max_subtasks allows at most {max_subtasks} "
            "(fewer shards, a smaller grid, or split.max_subtasks)"
        )
    make_private_dir(out_dir)
    plan = SplitPlan(parent_id, manifest.task_type, manifest, [], limit_bytes)
    if not manifest.splits:
        size = zip_path.stat().st_size
        plan.subtasks.append(SubtaskPlan(0, size, None, None, 1.0, zip_path))
    else:
        with zipfile.ZipFile(zip_path) as source:
            if manifest.task_type == "data_processing":
                _split_lines(source, out_dir, manifest, count, nodes, plan, limits, store_shards)
            else:
                _split_params(source, out_dir, manifest, count, nodes, plan)
    _check_limits(plan)
    return plan


def grid_size(manifest: Manifest) -> int:
    return math.prod(len(values) for values in manifest.grid.values())


def subtask_count(manifest: Manifest, count: int) -> int:
    """How many subtasks the split makes, from the manifest alone."""
    if not manifest.splits:
        return 1
    if manifest.task_type == "data_processing":
        return count
    if manifest.task_type == "machine_learning":
        size = grid_size(manifest)
        return size if manifest.max_subtasks is None else min(size, manifest.max_subtasks)
    if manifest.runs is not None:
        return min(count, manifest.runs)
    assert manifest.seeds is not None
    return min(count, manifest.seeds[1] - manifest.seeds[0] + 1)


def _check_limits(plan: SplitPlan) -> None:
    budget = plan.limit_bytes - UPLOAD_MARGIN
    over = [s for s in plan.subtasks if s.size_bytes > budget]
    if not over:
        return
    biggest = max(s.size_bytes for s in over)
    plan.problems.append(
        f"{len(over)} subtask(s) exceed the pool's limit of {plan.limit_bytes} bytes (largest {biggest} bytes)"
    )
    if plan.task_type == "data_processing":
        total = sum(s.size_bytes for s in plan.subtasks)
        plan.proposed_shards = max(len(plan.subtasks) + 1, math.ceil(total * 1.25 / max(budget, 1)))
        plan.problems.append(f"use at least {plan.proposed_shards} shards (--shards {plan.proposed_shards})")
    else:
        plan.problems.append("the code and data of one subtask alone are too large; make the zip smaller")


def _code_members(source: zipfile.ZipFile, skip: str) -> list[zipfile.ZipInfo]:
    return [m for m in source.infolist() if m.filename not in (skip, SUBTASK_FILE) and not m.is_dir()]


def _start_subtask(
    path: Path, source: zipfile.ZipFile, code: Sequence[zipfile.ZipInfo], meta: dict[str, Any]
) -> zipfile.ZipFile:
    out = zipfile.ZipFile(create_private_file(path), "w", zipfile.ZIP_DEFLATED, allowZip64=True)
    for member in code:
        info = zipfile.ZipInfo(member.filename, member.date_time)
        info.compress_type = member.compress_type
        info.external_attr = member.external_attr & 0o777 << 16
        with source.open(member) as src, out.open(info, "w", force_zip64=member.file_size > 2**31) as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    out.writestr(SUBTASK_FILE, json.dumps(meta, indent=1))
    return out


def _split_params(
    source: zipfile.ZipFile, out_dir: Path, manifest: Manifest, count: int, nodes: NodeList | None, plan: SplitPlan
) -> None:
    total = subtask_count(manifest, count)
    weights = plan_weights(total, nodes)
    code = _code_members(source, "")
    for index, values in enumerate(_param_sets(manifest, count, plan)):
        path = out_dir / f"{index:04d}.zip"
        meta = {
            "index": index,
            "total": total,
            "parent_task_id": plan.parent_id,
            "params": values,
            "task_type": manifest.task_type,
        }
        _start_subtask(path, source, code, meta).close()
        plan.subtasks.append(SubtaskPlan(index, path.stat().st_size, None, values, weights[index], path))


def _param_sets(manifest: Manifest, count: int, plan: SplitPlan) -> Iterator[dict[str, Any]]:
    if manifest.task_type == "machine_learning":
        names = sorted(manifest.grid)
        combos: Iterator[tuple[Any, ...]] = itertools.product(*(manifest.grid[n] for n in names))
        size, cap = grid_size(manifest), manifest.max_subtasks
        if cap is not None and size > cap:
            plan.notes.append(f"capped: {cap} of {size} combinations (split.max_subtasks)")
            combos = itertools.islice(combos, cap)
        for combo in combos:
            yield dict(zip(names, combo, strict=True))
        return
    if manifest.runs is not None:
        first, last, key = 0, manifest.runs - 1, "runs"
    else:
        assert manifest.seeds is not None
        first, last, key = manifest.seeds[0], manifest.seeds[1], "seeds"
    total = last - first + 1
    chunks = min(count, total)
    if chunks < count:
        plan.notes.append(f"{count} shards asked, only {total} {key}: {chunks} subtasks")
    bounds = [first + (total * i) // chunks for i in range(chunks + 1)]
    for i in range(chunks):
        low, high = bounds[i], bounds[i + 1] - 1
        # runs: [start, end) to run; seeds: [first, last] both included, as the manifest says them.
        yield {"runs": [low, high + 1]} if key == "runs" else {"seeds": [low, high]}


def _split_lines(
    source: zipfile.ZipFile,
    out_dir: Path,
    manifest: Manifest,
    count: int,
    nodes: NodeList | None,
    plan: SplitPlan,
    limits: ZipLimits,
    store_shards: bool,
) -> None:
    try:
        info = source.getinfo(manifest.input)
    except KeyError:
        raise SplitError(f"{MANIFEST}: split.input {manifest.input!r} is not in the zip") from None
    weights = plan_weights(count, nodes)
    code = _code_members(source, manifest.input)
    compress = zipfile.ZIP_STORED if store_shards else zipfile.ZIP_DEFLATED
    cutter = _LineCutter(info.file_size, weights, manifest.header)
    with source.open(info) as stream:
        shards = cutter.cut(
            stream,
            lambda index: _ShardZip(
                out_dir / f"{index:04d}.zip", source, code, manifest, plan.parent_id, index, count, compress
            ),
        )
    kept = [s for s in shards if s.lines > 0] or shards[:1]
    if len(kept) < len(shards):
        plan.notes.append(f"{len(shards)} shards asked, only enough lines for {len(kept)}")
    if sum(s.lines for s in kept) == 0:
        plan.notes.append(f"{manifest.input} is empty: one subtask runs on it as it is")
    for shard in shards:
        if shard not in kept:
            shard.path.unlink(missing_ok=True)
    for new_index, shard in enumerate(kept):
        if len(kept) != len(shards) or new_index != shard.index:
            shard.renumber(new_index, len(kept), out_dir)
        plan.subtasks.append(
            SubtaskPlan(
                new_index,
                shard.path.stat().st_size,
                shard.lines,
                {"shard": new_index, "input": manifest.input},
                weights[shard.index],
                shard.path,
            )
        )


class _ShardZip:
    """One subtask zip being written: the code, the metadata, then the shard streamed into its member."""

    def __init__(
        self,
        path: Path,
        source: zipfile.ZipFile,
        code: Sequence[zipfile.ZipInfo],
        manifest: Manifest,
        parent_id: str,
        index: int,
        total: int,
        compress: int,
    ) -> None:
        self.path = path
        self.index = index
        self.lines = 0
        self._manifest = manifest
        self._parent = parent_id
        meta = self._meta(index, total)
        self._zip = _start_subtask(path, source, code, meta)
        member = zipfile.ZipInfo(manifest.input, (2024, 1, 1, 0, 0, 0))
        member.compress_type = compress
        member.external_attr = 0o644 << 16
        self._out: IO[bytes] = self._zip.open(member, "w", force_zip64=True)

    def _meta(self, index: int, total: int) -> dict[str, Any]:
        return {
            "index": index,
            "total": total,
            "parent_task_id": self._parent,
            "params": {"shard": index, "input": self._manifest.input},
            "task_type": "data_processing",
        }

    def write(self, data: bytes) -> None:
        self._out.write(data)
        self.lines += data.count(b"\n")

    def close(self) -> None:
        self._out.close()
        self._zip.close()

    def renumber(self, index: int, total: int, out_dir: Path) -> None:
        """Rewrite the small metadata member after empty shards were dropped (the shard is copied raw)."""
        target = out_dir / f"{index:04d}.renumber"
        with zipfile.ZipFile(self.path) as old, zipfile.ZipFile(target, "w", allowZip64=True) as new:
            for member in old.infolist():
                copy = zipfile.ZipInfo(member.filename, member.date_time)
                copy.compress_type, copy.external_attr = member.compress_type, member.external_attr
                if member.filename == SUBTASK_FILE:
                    new.writestr(copy, json.dumps(self._meta(index, total), indent=1))
                else:
                    with old.open(member) as src, new.open(copy, "w", force_zip64=True) as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
        self.path.unlink()
        self.path = target.rename(out_dir / f"{index:04d}.zip")
        self.index = index


class _LineCutter:
    """Streams a line-oriented file into shards that end on line boundaries near weighted targets."""

    def __init__(self, size: int, weights: Sequence[float], header: bool) -> None:
        self._size = size
        self._weights = weights
        self._header = header

    def cut(self, stream: IO[bytes], open_shard: Any) -> list[Any]:
        head = stream.readline() if self._header else b""
        body = max(self._size - len(head), 0)
        targets, acc = [], 0.0
        for weight in self._weights[:-1]:
            acc += weight
            targets.append(int(body * acc))
        shards = [open_shard(0)]
        shards[0].write(head)
        pos, seeking = 0, False
        while chunk := stream.read(CHUNK):
            while chunk:
                current = shards[-1]
                k = len(shards) - 1
                if k >= len(targets):
                    current.write(chunk)
                    pos += len(chunk)
                    break
                if not seeking:
                    take = chunk[: max(targets[k] - pos, 0)]
                    if take:
                        current.write(take)
                        pos += len(take)
                        chunk = chunk[len(take) :]
                    if pos < targets[k]:
                        continue
                    # An empty take means we stand right after a cut (or at the start): a line boundary.
                    seeking = bool(take) and not take.endswith(b"\n")
                    if seeking:
                        continue
                else:
                    newline = chunk.find(b"\n")
                    if newline < 0:
                        current.write(chunk)
                        pos += len(chunk)
                        break
                    current.write(chunk[: newline + 1])
                    pos += newline + 1
                    chunk = chunk[newline + 1 :]
                    seeking = False
                current.close()
                shards.append(open_shard(len(shards)))
                shards[-1].write(head)
        for _ in range(len(shards), len(self._weights)):
            shards[-1].close()
            shards.append(open_shard(len(shards)))
            shards[-1].write(head)
        shards[-1].close()
        return shards
