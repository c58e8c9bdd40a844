"""The upload rules the pool enforces and the client checks first, and ids the client makes that obey them."""

from __future__ import annotations

from pathlib import Path

import pytest

from hivemind_tui.core.task_rules import task_id_problem, upload_problem
from hivemind_tui.services.task_splitter import new_task_id


@pytest.mark.parametrize("task_id", ["a", "job-1", "A.b_c-9", "x" * 128, "etl.0001.r2"])
def test_good_ids(task_id: str) -> None:
    assert task_id_problem(task_id) is None


@pytest.mark.parametrize(
    ("task_id", "why"),
    [
        (".", "start with a letter or digit"),
        (".hidden", "start with a letter or digit"),
        ("-rf", "start with a letter or digit"),
        ("_x", "start with a letter or digit"),
        ("é1", "start with a letter or digit"),
        ("", "1 to 128"),
        ("x" * 129, "1 to 128"),
        ("a/b", "1 to 128"),
        ("a..b", "'..'"),
    ],
)
def test_bad_ids(task_id: str, why: str) -> None:
    problem = task_id_problem(task_id)
    assert problem is not None and why in problem


@pytest.mark.parametrize("name", ["_job.zip", "-x.zip", "tâche.zip", "...zip", "数据.zip", "a b c.zip"])
def test_ids_made_from_any_file_name_are_accepted(name: str) -> None:
    assert task_id_problem(new_task_id(Path(name))) is None


def test_upload_values() -> None:
    assert upload_problem(1000, "simulation", "eu", "A100") is None
    assert upload_problem(-1000, "", "", "") is None
    for args, field in [
        ((1001, "", "", ""), "priority"),
        ((-2147483648, "", "", ""), "priority"),
        ((0, "t" * 65, "", ""), "task_type"),
        ((0, "", "x" * 5000, ""), "location"),
        ((0, "", "", "g" * 257), "gpu_name"),
    ]:
        problem = upload_problem(*args)
        assert problem is not None and problem.startswith(field)
