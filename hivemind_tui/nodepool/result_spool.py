"""Results a worker could not hand to the pool yet, kept in its data dir (0600) until the pool takes or refuses them.

Every result goes here before its upload, so neither a pool that is away nor a worker restart loses it.
One file per task: a JSON header line (task id, attempt, exit code, reason, the task's last output the pool has
not taken and where it starts in the attempt's output), then the result zip.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from hivemind_tui.core.datadir import atomic_write, make_private_dir


@dataclass(frozen=True)
class SpooledResult:
    task_id: str
    attempt: int
    exit_code: int
    reason: str
    result_zip: bytes
    # Output the pool has not taken yet, sent before the result (which ends the task), and its byte offset in
    # the attempt's output: a resend after a lost answer is not appended twice.
    output: str = ""
    output_offset: int = 0


class ResultSpool:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, task_id: str) -> Path:
        return self.folder / (hashlib.sha256(task_id.encode()).hexdigest()[:32] + ".result")

    def put(self, result: SpooledResult) -> None:
        make_private_dir(self.folder)
        header = {
            "task_id": result.task_id,
            "attempt": result.attempt,
            "exit_code": result.exit_code,
            "reason": result.reason,
            "output": result.output,
            "output_offset": result.output_offset,
        }
        atomic_write(self._path(result.task_id), json.dumps(header).encode() + b"\n" + result.result_zip, mode=0o600)

    def remove(self, task_id: str) -> None:
        self._path(task_id).unlink(missing_ok=True)

    def all(self) -> list[SpooledResult]:
        """Every kept result; a damaged file (a crash mid-write cannot make one, atomic_write) is skipped."""
        results = []
        for path in sorted(self.folder.glob("*.result")) if self.folder.is_dir() else []:
            data = path.read_bytes()
            head, _, body = data.partition(b"\n")
            try:
                meta = json.loads(head)
                results.append(
                    SpooledResult(
                        str(meta["task_id"]),
                        int(meta["attempt"]),
                        int(meta["exit_code"]),
                        str(meta["reason"]),
                        body,
                        str(meta.get("output", "")),
                        int(meta.get("output_offset", 0)),
                    )
                )
            except (ValueError, KeyError, TypeError):
                continue
        return results
