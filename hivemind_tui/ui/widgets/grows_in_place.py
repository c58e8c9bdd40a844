"""Scrollables whose growth repaints them, not the whole screen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.geometry import Size
from textual.reactive import Reactive
from textual.widgets import Log

if TYPE_CHECKING:
    from textual.widget import Widget

    _Scrollable = Widget
else:
    # A plain mixin at run time: Textual takes a widget's default CSS along its first widget base, so a
    # Widget subclass in front would hide ScrollView's and Log's.
    _Scrollable = object


class GrowsInPlace(_Scrollable):
    """Textual lays the whole screen out at any change of a virtual size: the tasks screen at every task
    submitted (a row more), a followed log at every line. A scrollable sized by its screen (`1fr` or a fixed
    height, never `auto`: its own region does not follow its content) updates its scrollbars and repaints
    itself instead; a scrollbar that comes or goes still lays the screen out (Textual's own reactive).
    Put it first among the bases."""

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def watch_virtual_size(self, size: Size) -> None:
        if self.container_size:  # laid out already (before that, the layout sets the scrollbars)
            self._scroll_update(size)


class GrowingLog(GrowsInPlace, Log):
    """The task's log and the full-screen log, which gain a line a second while a task is followed."""

    def on_unmount(self) -> None:
        """A removed widget is a reference cycle (with its screen) that waits for the collector, which a
        console with a large heap runs a minute or more apart: the lines go now, not with it. An hour of a
        followed log is megabytes, and the soak opened and closed one every 90 s."""
        self.clear()
