"""HiveMind's result zip as the only word on how a task ended, and where a pool dials HiveMind-style workers."""

from __future__ import annotations

import io
import zipfile

from hivemind_tui.nodepool.hivemind_imitation import pushes_to
from hivemind_tui.nodepool.hivemind_result import execution_log, reported_failure, with_execution_log
from hivemind_tui.nodepool.hivemind_workers import dial_host
from tests.helpers import make_zip


def test_the_status_line_round_trips() -> None:
    output = make_zip({"output/out.txt": "42"})
    for exit_code, stopped, failure in ((0, False, ""), (3, False, "Failed"), (0, True, "Stopped by user")):
        zipped = with_execution_log(output, execution_log("t1", exit_code, stopped, "w1"))
        with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
            assert archive.read("output/out.txt") == b"42"
            assert "Node: w1" in archive.read("execution_log.txt").decode()
        assert reported_failure(zipped) == (f"the worker reported Status: {failure}" if failure else "")


def test_a_result_that_says_nothing_is_no_failure() -> None:
    assert reported_failure(b"") == ""
    assert reported_failure(b"not a zip") == ""
    assert reported_failure(make_zip({"execution_log.txt": "Task ID: t1\n"})) == ""
    assert with_execution_log(b"", "Status: Failed\n") and reported_failure(with_execution_log(b"", "Status: Failed\n"))


def test_where_workers_are_dialled() -> None:
    assert not pushes_to("127.0.0.1") and not pushes_to("")
    assert pushes_to("127.0.0.2") and pushes_to("localhost") and pushes_to("192.0.2.7")
    assert dial_host("192.0.2.7", "192.0.2.9") == "192.0.2.7"  # what it says it is
    assert dial_host("127.0.0.1", "192.0.2.9") == "192.0.2.9"  # loopback from afar names no place
    assert dial_host("", "192.0.2.9") == "192.0.2.9"
    assert dial_host("127.0.0.2", "127.0.0.1") == "127.0.0.2"
