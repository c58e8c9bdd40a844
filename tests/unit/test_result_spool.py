"""The worker's result spool: what it keeps comes back whole, files written before it kept output too."""

from __future__ import annotations

import json
from pathlib import Path

from hivemind_tui.nodepool.result_spool import ResultSpool, SpooledResult


def test_a_kept_result_comes_back_with_its_unsent_output(tmp_path: Path) -> None:
    spool = ResultSpool(tmp_path / "spool")
    kept = SpooledResult("t-1", 2, 1, "exit code 1", b"PK\x05\x06zip", "last line\n\u00e9\n", 4096)
    spool.put(kept)
    assert spool.all() == [kept]
    assert oct(next((tmp_path / "spool").glob("*.result")).stat().st_mode & 0o777) == "0o600"
    spool.remove("t-1")
    assert spool.all() == []


def test_a_file_kept_before_output_was_kept_still_reads(tmp_path: Path) -> None:
    spool = ResultSpool(tmp_path)
    header = {"task_id": "t-old", "attempt": 1, "exit_code": 0, "reason": ""}
    (tmp_path / "old.result").write_bytes(json.dumps(header).encode() + b"\nzipbytes")
    (tmp_path / "torn.result").write_bytes(b'{"task_id": "t-torn"')
    assert spool.all() == [SpooledResult("t-old", 1, 0, "", b"zipbytes")]
