"""The parents and subtasks of the console's store, kept in memory between refreshes.

A refresh with 100,000 tasks must not read and judge 20,000 parents again. So the rows are read again only
when the store's change counter moved (store migration 8: a submit, retry, stop or prune, here or in another
process), and the task manager works out again only the parents of entries of the pool's list that changed
since its last look (services/task_manager.py).

What a refresh writes itself (a parent first seen finished, a staged zip deleted, a subtask's last finished
status) does not move the counter: it is kept here, beside the rows, until they are read again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any, NamedTuple

from hivemind_tui.core.sqlite_db import Database


class SubRow(NamedTuple):
    """What a refresh needs of a subtask's row, read once: a Row looks its columns up by name every time."""

    task_id: str
    idx: int
    attempt: int
    uploaded: int  # 0 or 1, as stored
    rejected: str
    size: int
    params: str
    last_status: str
    zip_path: str


# The subtasks: their parent's id and whether a retry superseded them, then SubRow's columns in its order;
# parent by parent in shard order, as the (parent_id, idx) index holds them: no sort of 100,000 rows.
SUBTASKS = (
    "SELECT s.parent_id, s.superseded, s.task_id, s.idx, s.attempt, s.uploaded, s.rejected, s.size, s.params, "
    "s.last_status, s.zip_path FROM subtasks s JOIN parents p ON p.parent_id = s.parent_id "
    "WHERE p.pool = ? AND (p.owner = ? OR ?) ORDER BY s.parent_id, s.idx"
)


# What judging a parent reads of its row; the plan and the rest are read by the operations that need them,
# not kept for 20,000 parents.
PARENTS = (
    "SELECT parent_id, owner, task_type, priority, created_at, stopped, finished_at FROM parents p "
    "WHERE p.pool = ? AND (p.owner = ? OR ?) ORDER BY created_at DESC"
)


@dataclass(slots=True)  # one per parent: 20,000 dicts fewer
class CachedParent:
    row: Any
    subs: tuple[SubRow, ...]
    # What judging looks at first, worked out once: the subtasks' ids, and whether every one was sent and none
    # refused (then each one's status is the pool's).
    ids: tuple[str, ...] = ()
    sent: bool = True
    # The state last worked out.
    state: Any = None


def cached_parent(row: Any, subs: tuple[SubRow, ...]) -> CachedParent:
    sent = all(sub.uploaded and not sub.rejected for sub in subs)
    return CachedParent(row, subs, tuple([sub.task_id for sub in subs]), sent)


@dataclass
class ParentCache:
    store: Database
    parents: list[CachedParent] = field(default_factory=list)
    # Every parent's and subtask's id (those a retry replaced too): the pool's other tasks are loose ones.
    owned: frozenset[str] = frozenset()
    # Written by this console since the rows were read: last finished statuses, cleared zips, finished parents.
    last_status: dict[str, str] = field(default_factory=dict)
    zip_cleared: set[str] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)
    _parent_of: dict[str, CachedParent] = field(default_factory=dict)
    _version: int | None = None
    _visible: tuple[object, ...] | None = None

    async def current(self, visible: tuple[object, ...]) -> bool:
        """Read the rows again if the store changed (or the session sees other parents); whether it did."""
        counter = await self.store.fetchone("SELECT n FROM changes WHERE name = 'parents'")
        version = int(counter["n"]) if counter is not None else None
        if version is not None and version == self._version and visible == self._visible:
            return False
        # The counter is read first: a change committed while the rows are read moves it again for next time.
        rows = await self.store.fetchall(PARENTS, visible)
        subs = await self.store.fetchall_tuples(SUBTASKS, visible)
        make = SubRow._make
        grouped = {
            parent_id: tuple([make(sub[2:]) for sub in group if not sub[1]])
            for parent_id, group in groupby(subs, itemgetter(0))
        }
        self.parents = [cached_parent(row, grouped.get(row["parent_id"], ())) for row in rows]
        self._parent_of = {sub.task_id: cached for cached in self.parents for sub in cached.subs}
        self.owned = frozenset(sub[2] for sub in subs) | {row["parent_id"] for row in rows}  # by index: 100,000 rows
        self.last_status.clear()
        self.zip_cleared.clear()
        self.finished.clear()
        self._version, self._visible = version, visible
        return True

    def parents_of(self, task_ids: Iterable[str]) -> list[CachedParent]:
        """The parents these subtasks belong to, each once."""
        found = {id(c): c for i in task_ids if (c := self._parent_of.get(i)) is not None}
        return list(found.values())

    def last_status_of(self, sub: SubRow) -> str:
        return self.last_status.get(sub.task_id, sub.last_status)

    def has_zip(self, sub: SubRow) -> bool:
        return bool(sub.zip_path) and sub.task_id not in self.zip_cleared

    def is_finished(self, row: Any) -> bool:
        return row["finished_at"] is not None or row["parent_id"] in self.finished
