"""The footer of every screen: Textual's, compact, without the memory its recomposes leave behind."""

from __future__ import annotations

from textual.widgets import Footer

from hivemind_tui.ui.hive import forget_gone_watchers


class ConsoleFooter(Footer):
    """Each recompose (every change of the screen's bindings) makes new FooterKeys bound to `compact`; the
    old ones stay in its watchers until `compact` changes, which it never does here."""

    def __init__(self) -> None:
        super().__init__(compact=True)

    async def recompose(self) -> None:
        await super().recompose()
        forget_gone_watchers(self)
