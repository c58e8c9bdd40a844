"""The footer of every screen: Textual's, compact, made again only when what it shows changes."""

from __future__ import annotations

from collections.abc import Hashable

from textual.widgets import Footer

from hivemind_tui.ui.hive import forget_gone_watchers


class ConsoleFooter(Footer):
    """Textual's footer recomposes at every change of the screen's bindings, and showing a screen changes
    them about seven times in a row (the stack, the focus, each mount): seven sets of ten FooterKeys made,
    mounted and styled, a sixth of the node monitor's first display. Here a recompose whose bindings are
    those already shown does nothing.

    Each recompose makes new FooterKeys bound to `compact`; the old ones stay in its watchers until
    `compact` changes, which it never does here, so they are dropped after each recompose."""

    def __init__(self) -> None:
        super().__init__(compact=True)
        self._shown: Hashable = None

    def _keys_made_of(self) -> Hashable:
        """What `compose` makes its keys of (the owning widget aside: a key works wherever the focus is)."""
        if not self._bindings_ready:
            return None
        return tuple(
            (binding, enabled, tooltip) for _, binding, enabled, tooltip in self.screen.active_bindings.values()
        )

    async def recompose(self) -> None:
        if not self.is_attached:  # as Textual's own: a footer on its way out (its screen gone) is left alone
            return
        bindings = self._keys_made_of()
        if bindings is not None and bindings == self._shown:
            return
        await super().recompose()
        self._shown = bindings
        forget_gone_watchers(self)
