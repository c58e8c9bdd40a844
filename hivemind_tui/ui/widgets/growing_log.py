"""A `Log` whose growth repaints it, not the whole screen."""

from __future__ import annotations

from textual.geometry import Size
from textual.reactive import Reactive
from textual.widgets import Log


class GrowingLog(Log):
    """Textual lays the whole screen out at any change of a virtual size, so a followed log that gains a
    line a second laid its screen out every second. A log sized by its screen (`height: 1fr`, never `auto`:
    its own region does not follow its lines) updates its scrollbars and repaints itself instead; a scrollbar
    that comes or goes still lays the screen out (Textual's own reactive does that)."""

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def watch_virtual_size(self, size: Size) -> None:
        if self.container_size:  # laid out already (before that, the layout sets the scrollbars)
            self._scroll_update(size)
