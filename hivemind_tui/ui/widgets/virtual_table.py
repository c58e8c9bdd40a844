"""A table that keeps its rows in a model and renders only the lines on screen.

Textual's DataTable builds every row up front (about 3.8 s for 10,000 rows here) and re-measures columns
on updates; this table sorts and filters a list of keys, renders the visible lines on demand with the
Line API, and caches each row's rendered text until that row changes. Fixed column widths keep updates
cheap. Keys: arrows, page up/down, home/end move the cursor; enter selects; space marks.

Rows may hang under another row (`group_of` names its key): they follow it wherever sorting puts it, in the
order given, and are shown only while it is (a filter hides a parent's rows with it).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from hivemind_tui.ui.widgets.grows_in_place import GrowsInPlace

RowT = TypeVar("RowT")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    right: bool = False
    # Ids keep their unique end: cut in the middle (`very-lo…-491a66`) instead of at the end.
    middle: bool = False


class VirtualTable(GrowsInPlace, ScrollView, Generic[RowT], can_focus=True):
    DEFAULT_CSS = """
    VirtualTable { height: 1fr; }
    VirtualTable > .virtual-table--cursor { background: $accent 40%; text-style: bold; }
    VirtualTable:focus > .virtual-table--cursor { background: $accent; color: $text; }
    VirtualTable > .virtual-table--marked { color: $warning; text-style: bold; }
    VirtualTable > .virtual-table--dim { color: $text-muted; text-style: italic; }
    VirtualTable > .virtual-table--header { background: $panel; text-style: bold; }
    """
    COMPONENT_CLASSES = {
        "virtual-table--cursor",
        "virtual-table--marked",
        "virtual-table--dim",
        "virtual-table--header",
    }
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Open"),
        Binding("space", "mark", "Mark"),
    ]

    cursor = reactive(0, always_update=True, repaint=False)

    class _RowMessage(Message):
        def __init__(self, table: VirtualTable[Any], key: Hashable | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> VirtualTable[Any]:
            return self.table

    class Selected(_RowMessage):
        """Enter on a row (`key` is never None)."""

    class CursorMoved(_RowMessage):
        """The cursor is on another row (`key` is None in an empty table)."""

    def __init__(
        self,
        columns: list[Column],
        key_of: Callable[[RowT], Hashable],
        cells_of: Callable[[RowT], tuple[Any, ...]],
        dim_if: Callable[[RowT], bool] | None = None,
        *,
        group_of: Callable[[RowT], Hashable | None] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.columns = columns
        self._key_of = key_of
        self._cells_of = cells_of
        self._dim_if = dim_if or (lambda row: False)
        self._group_of = group_of
        self._rows: dict[Hashable, RowT] = {}
        self._order: list[Hashable] = []
        self._text: dict[Hashable, str] = {}
        self._sort: tuple[str, bool] | None = None
        self._filter: Callable[[RowT], bool] | None = None
        self.marked: set[Hashable] = set()
        self._width = sum(c.width + 1 for c in columns)

    # -- the model --------------------------------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def total_count(self) -> int:
        return len(self._rows)

    @property
    def cursor_key(self) -> Hashable | None:
        return self._order[self.cursor] if 0 <= self.cursor < len(self._order) else None

    def row(self, key: Hashable) -> RowT | None:
        return self._rows.get(key)

    def visible_keys(self) -> list[Hashable]:
        return list(self._order)

    def replace_rows(self, rows: Iterable[RowT] | Mapping[Any, RowT]) -> int:
        """A refresh: these rows, in this order, are now the whole model (rows not among them are gone,
        whether or not a filter shows them); only changed rows are re-rendered. Returns how many changed.
        Rows already keyed by their `key_of` (a mapping) are not keyed again."""
        if not self._rows:  # the first rows: nothing to compare them with
            self._rows = dict(rows) if isinstance(rows, Mapping) else {self._key_of(row): row for row in rows}
            self._text.clear()
            self._rebuild(None)
            return len(self._rows)
        fresh: dict[Hashable, RowT] = {}
        changed = 0
        keyed = rows.items() if isinstance(rows, Mapping) else ((self._key_of(row), row) for row in rows)
        for key, row in keyed:
            fresh[key] = row
            old = self._rows.get(key)
            if old is not row and old != row:  # most rows of a refresh are the very same objects
                self._text.pop(key, None)
                changed += 1
        gone = self._rows.keys() - fresh.keys()
        for key in gone:
            self._text.pop(key, None)
        same_order = not gone and list(fresh) == list(self._rows)
        self.marked &= set(fresh)
        self._rows = fresh
        if same_order and self._sort is None and self._filter is None:
            self.refresh()  # the same rows in the same order: only the changed lines repaint
        else:
            self._rebuild(self.cursor_key)
        return changed + len(gone)

    def repaint(self, keys: Iterable[Hashable]) -> None:
        """Render these rows again (their cells depend on the time, say) though the rows did not change."""
        for key in keys:
            self._text.pop(key, None)
        self.refresh()

    def update_rows(self, rows: Iterable[RowT]) -> None:
        """Rows of the model replaced by these (the same keys; none comes or goes): work for the changed
        rows only, where `replace_rows` walks the whole model. A key the model lacks raises KeyError."""
        for row in rows:
            key = self._key_of(row)
            if key not in self._rows:
                raise KeyError(key)
            self._rows[key] = row
            self._text.pop(key, None)
        if self._sort is None and self._filter is None:
            self.refresh()
        else:
            self._rebuild(self.cursor_key)

    def repaint_all(self) -> None:
        """Render every row again when it is next on screen (a column that follows the clock)."""
        self._text.clear()
        self.refresh()

    def sort_by(self, column: str, reverse: bool = False) -> None:
        self._sort = (column, reverse)
        self._rebuild(self.cursor_key)

    @property
    def sort_state(self) -> tuple[str, bool] | None:
        return self._sort

    def set_filter(self, predicate: Callable[[RowT], bool] | None) -> None:
        self._filter = predicate
        self._rebuild(self.cursor_key)

    def move_to(self, key: Hashable) -> None:
        """The cursor onto the row of `key`, if it is shown."""
        if key in self._order:
            self.cursor = self._order.index(key)

    def _rebuild(self, keep: Hashable | None) -> None:
        under: dict[Hashable, list[Hashable]] = {}
        if self._group_of is None and self._filter is None:
            keys = list(self._rows)  # every row in the model's order, without a call per row (50,000 nodes)
        else:
            keys = []
            for k, r in self._rows.items():
                group = self._group_of(r) if self._group_of is not None else None
                if group is not None:
                    under.setdefault(group, []).append(k)
                elif self._filter is None or self._filter(r):
                    keys.append(k)
        if self._sort is not None:
            index = next(i for i, c in enumerate(self.columns) if c.key == self._sort[0])
            keys.sort(key=lambda k: _sort_key(self._cells_of(self._rows[k])[index]), reverse=self._sort[1])
        if under:
            keys = [shown for k in keys for shown in (k, *under.get(k, ()))]
        self._order = keys
        self.virtual_size = Size(self._width, len(keys))  # repaints, lays nothing out (GrowsInPlace)
        position = {k: i for i, k in enumerate(keys)} if keep is not None else {}
        self.cursor = min(position.get(keep, self.cursor), max(len(keys) - 1, 0))
        self.refresh()

    # -- rendering --------------------------------------------------------------------------------
    def header_text(self) -> str:
        parts = []
        for c in self.columns:
            label = c.label
            if self._sort and self._sort[0] == c.key:
                label += "▼" if self._sort[1] else "▲"
            parts.append(_fit(label, c.width, c.right, False))
        return " ".join(parts)

    def _line(self, key: Hashable) -> str:
        text = self._text.get(key)
        if text is None:
            cells = self._cells_of(self._rows[key])
            text = " ".join(
                _fit(_show(v), c.width, c.right, c.middle) for v, c in zip(cells, self.columns, strict=True)
            )
            self._text[key] = text
        return text

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.size.width
        if index >= len(self._order):
            return Strip.blank(width, self.rich_style)
        key = self._order[index]
        text = ("●" if key in self.marked else " ") + self._line(key)
        style = self.rich_style
        if index == self.cursor:
            style += self.get_component_rich_style("virtual-table--cursor")
        elif key in self.marked:
            style += self.get_component_rich_style("virtual-table--marked")
        elif self._dim_if(self._rows[key]):
            style += self.get_component_rich_style("virtual-table--dim")
        # `text` is exactly `_width` cells. Unscrolled in a view at least as wide, the line is that one
        # segment padded: one Strip, where cropping and extending made three (each with seven caches), for
        # every line of every repaint.
        scroll_x = self.scroll_offset.x
        if scroll_x == 0 and width >= self._width:
            return Strip([Segment(text + " " * (width - self._width), style)], width)
        strip = Strip([Segment(text, style)], self._width)
        return strip.crop(scroll_x, scroll_x + width).extend_cell_length(width, style)

    # -- keys -------------------------------------------------------------------------------------
    def watch_cursor(self, old: int, new: int) -> None:
        height = max(self.size.height, 1)
        top = self.scroll_offset.y
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + height:
            self.scroll_to(y=new - height + 1, animate=False)
        self.refresh()
        self.post_message(self.CursorMoved(self, self.cursor_key))

    def action_cursor(self, delta: int) -> None:
        if self._order:
            self.cursor = max(0, min(len(self._order) - 1, self.cursor + delta))

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(self.size.height - 1, 1))

    def action_jump(self, where: int) -> None:
        if self._order:
            self.cursor = 0 if where == 0 else len(self._order) - 1

    def action_select(self) -> None:
        if self.cursor_key is not None:
            self.post_message(self.Selected(self, self.cursor_key))

    def action_mark(self) -> None:
        key = self.cursor_key
        if key is None:
            return
        self.marked.symmetric_difference_update({key})
        self.action_cursor(1)
        self.refresh()

    def on_click(self, event: Any) -> None:
        index = self.scroll_offset.y + event.y
        if 0 <= index < len(self._order):
            self.cursor = index


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def _fit(text: str, width: int, right: bool, middle: bool) -> str:
    """`text` in exactly `width` terminal cells (wide characters count two), cut with an ellipsis."""
    if cell_len(text) > width:
        if middle and width >= 5:
            tail = width // 2 - 1
            text = set_cell_size(text, width - tail - 1) + "…" + text[-tail:]
            text = set_cell_size(text, width)
        else:
            text = set_cell_size(text, max(width - 1, 0)) + "…"
    padding = " " * (width - cell_len(text))
    return padding + text if right else text + padding


def _sort_key(value: Any) -> tuple[int, Any]:
    """None sorts first; numbers before text; text case-insensitively."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    return (2, str(value).lower())


__all__ = ["Column", "VirtualTable"]
