"""Changing a Static's text: only when it changed, and a layout pass of the screen only when the new text
can change the Static's size.

Textual's `Static.update` lays the whole screen out by default, and the compositor then paints every widget
again. An idle live console changes a few figures each refresh (this host's CPU, the pool's latency) without
changing any size, and laid its screen out twice a refresh for them.
"""

from __future__ import annotations

from textual.content import Content
from textual.dom import DOMNode
from textual.widgets import Static


def widest(content: Content) -> int:
    """The widest line in cells, before wrapping."""
    return max((line.cell_length for line in content.split("\n")), default=0)


def size_may_change(static: Static, before: str, after: str) -> bool:
    """Whether `after` in place of `before` can change the Static's size: a width that follows the text and
    the text's width changed, or a height that follows the text and its lines at the Static's width (wrapped
    as Textual wraps them) changed."""
    old, new = Content.from_markup(before), Content.from_markup(after)
    styles = static.styles
    if styles.width is not None and styles.width.is_auto and widest(old) != widest(new):
        return True
    if styles.height is None or not styles.height.is_auto:
        return False
    rules, width = styles.get_rules(), static.content_size.width
    return width <= 0 or old.get_height(rules, width) != new.get_height(rules, width)


class ShownTexts:
    """The markup each Static under `owner` shows, by selector, so that an unchanged text costs nothing."""

    def __init__(self, owner: DOMNode) -> None:
        self._owner = owner
        self._shown: dict[str, str] = {}

    def set(self, selector: str, text: str) -> None:
        before = self._shown.get(selector)
        if before != text:
            self._shown[selector] = text
            static = self._owner.query_one(selector, Static)
            static.update(text, layout=before is None or size_may_change(static, before, text))
