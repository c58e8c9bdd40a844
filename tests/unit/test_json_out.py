"""A command's JSON is written in pieces, and the pieces make exactly what json.dumps makes."""

from __future__ import annotations

import io
import json

from hivemind_tui.core.json_out import BATCH, EncodedItems, write_json


class Pieces(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_the_bytes_are_json_dumps_bytes() -> None:
    rows = [{"task_id": f"t{i}", "message": 'héllo "quoted" \n', "n": i, "x": None} for i in range(BATCH * 2 + 7)]
    for data in (
        {"tasks": rows, "count": len(rows)},
        {"tasks": rows[: BATCH * 2]},
        {"tasks": rows[:3], "nested": {"a": [1, 2.5, True]}},
        {"tasks": []},
        {},
        [1, 2, 3],
        "plain",
    ):
        out = Pieces()
        write_json(data, out)
        assert out.getvalue() == json.dumps(data, ensure_ascii=False)
        assert json.loads(out.getvalue()) == data


def test_a_long_list_goes_out_a_batch_at_a_time() -> None:
    out = Pieces()
    write_json({"tasks": [{"n": i} for i in range(BATCH * 5)]}, out)
    assert out.writes >= 5


def test_items_encoded_already_are_written_as_json_dumps_writes_the_list() -> None:
    items = [{"n": i, "s": 'é "q" \\ \n'} for i in range(BATCH * 2 + 3)]
    for listed in (items, items[:1], []):
        out = Pieces()
        write_json({"tasks": EncodedItems([json.dumps(i, ensure_ascii=False) for i in listed]), "k": 1}, out)
        assert out.getvalue() == json.dumps({"tasks": listed, "k": 1}, ensure_ascii=False)
