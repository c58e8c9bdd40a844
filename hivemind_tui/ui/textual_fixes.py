"""Workarounds for Textual behaviour that costs a console open for weeks; each names its upstream issue.

Applied once, when the app module is imported (ui/app.py), and idempotent.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from textual._styles_cache import StylesCache


def release_styles_caches() -> None:
    """Cache `StylesCache.get_inner_outer` by its colours alone (Textualize/textual#6665).

    Textual wraps the method in `lru_cache` with the instance in the key, so the style caches of the last
    1,024 widgets that painted (with every line they had painted) stay alive after the widgets are gone. The
    method reads only its two colours; the same cache keyed by them keeps the speed and pins no widget."""
    method = StylesCache.get_inner_outer
    if getattr(method, "_colours_only", False):
        return
    original = method.__wrapped__
    by_colours = lru_cache(1024)(lambda base_background, background: original(None, base_background, background))

    def get_inner_outer(self: StylesCache, base_background: Any, background: Any) -> Any:
        return by_colours(base_background, background)

    get_inner_outer._colours_only = True  # type: ignore[attr-defined]
    StylesCache.get_inner_outer = get_inner_outer  # type: ignore[assignment,method-assign]
