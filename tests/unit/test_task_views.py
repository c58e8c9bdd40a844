"""A task's JSON text, made without its dict, is byte for byte what json.dumps makes of the dict."""

from __future__ import annotations

import json
import math

from hivemind_tui.services.models import TaskInfo
from hivemind_tui.services.task_views import TaskTexts, task_json, task_json_text

HOSTILE = [
    "plain",
    "",
    'quote " and \\ backslash',
    "new\nline\ttab\x00nul\x1bescape",
    "é 数据 😀 \u2028\u2029",
    "[b]markup[/b]",
]


def test_a_tasks_text_is_json_dumps_of_its_dict() -> None:
    tasks = [
        TaskInfo(
            task_id=f"t-{i}-{text}",
            status=("COMPLETED", "FAILED", "RUNNING", "weird status")[i % 4],
            message=text,
            worker=text,
            owner=HOSTILE[(i + 1) % len(HOSTILE)],
            created_at=(None, 0.0, 1_800_000_000.123456, 1e-7, -5.5, math.inf, 7, -0.0)[i % 8],
            updated_at=(1.5, None, math.nan, -math.inf)[i % 4],
            priority=(0, -3, 2**40)[i % 3],
            task_type=text,
            parent_task_id=HOSTILE[(i + 2) % len(HOSTILE)],
            exit_code=(None, 0, 137, -9)[i % 4],
        )
        for i, text in enumerate(HOSTILE * 4)
    ]
    for task in tasks:
        assert task_json_text(task) == json.dumps(task_json(task), ensure_ascii=False)


def test_texts_made_page_by_page_serve_the_very_tasks_they_were_made_of() -> None:
    """What `tasks list --json` encodes while the pool makes the next page is used only for the same object:
    a task listed again in a later page, or changed by the look at the parents, is encoded anew."""

    first = TaskInfo(task_id="a", status="RUNNING", message=HOSTILE[3])
    again = first._replace(status="COMPLETED")  # a later page's entry for the same task
    other = TaskInfo(task_id="b", status="PENDING")
    texts = TaskTexts()
    texts([first, other])
    texts([again])
    assert texts.text(again) == json.dumps(task_json(again), ensure_ascii=False)
    assert texts.text(first) == json.dumps(task_json(first), ensure_ascii=False)
    assert texts.text(other) == task_json_text(other)
