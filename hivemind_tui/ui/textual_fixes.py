"""Workarounds for Textual behaviour that costs a console open for weeks; each names its upstream issue, or
says that none was filed yet (found against Textual 8.2.8, where this project had no way to file one).

Applied once, when the app is made (ui/app.py `HivemindApp.__init__`), and idempotent.
"""

from __future__ import annotations
import __future__

import asyncio
import contextvars
import inspect
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache, partial
from typing import Any, ParamSpec, TypeVar

from rich.style import Style
from textual._compositor import Compositor
from textual._styles_cache import StylesCache
from textual.app import App
from textual.css.stylesheet import Stylesheet
from textual.dom import DOMNode
from textual.strip import Strip
from textual.worker import Worker, active_worker


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


def strips_do_not_cache_themselves() -> None:
    """`Strip.divide` and `Strip.crop_extend` answer the strip itself without caching it in itself.

    When the answer is the strip itself (cut at its own end: a line one widget wide, which the compositor
    divides at every paint; or cropped and extended to exactly its own cells), Textual 8 stores it in the
    strip's own cache: a reference cycle, freed only when the collector goes through the generation the strip
    reached. The console collects rarely (core/heap.py), and its soak left ~2,000 painted strips a minute, with
    their segments, styles and seven caches each, as garbage waiting for it (several MB at a time). Those cases
    now answer before the cache is looked at; every other answer is Textual's own, cached as before. Upstream:
    not filed yet."""
    if getattr(Strip.divide, "_no_self_cycle", False):
        return
    divide, crop_extend = Strip.divide, Strip.crop_extend

    def divide_without_cycle(self: Strip, cuts: Iterable[int]) -> Sequence[Strip]:
        cuts = [cut for cut in cuts if cut <= self.cell_length]
        if cuts == [self.cell_length]:
            return [self]
        return divide(self, cuts)

    def crop_extend_without_cycle(self: Strip, start: int, end: int, style: Style | None) -> Strip:
        if start <= 0 and end == self.cell_length:
            return self
        return crop_extend(self, start, end, style)

    divide_without_cycle._no_self_cycle = True  # type: ignore[attr-defined]
    Strip.divide = divide_without_cycle  # type: ignore[method-assign]
    Strip.crop_extend = crop_extend_without_cycle  # type: ignore[method-assign]


def component_styles_kept() -> None:
    """A widget's parts (component classes: a table's cursor, a footer key's key) keep the nodes their styles
    are computed on.

    Each time Textual 8 applies the stylesheet to a widget with parts (its classes or pseudo-classes changed,
    its screen came back), it made a node for each part, attached it to the widget, and dropped the last ones:
    a node and its styles are a reference cycle of a dozen objects (styles, bindings, signals, weak sets) left
    to the collector. On the soak's walk they were the largest share of the console's cyclic garbage (306
    such nodes in 3 minutes, with 3 MiB of garbage in all). A part seen before has the stylesheet applied to
    its node again; the widget is repainted when a part's rules changed, as before. Upstream: not filed
    yet."""
    if getattr(Stylesheet._process_component_classes, "_keeps_nodes", False):
        return

    def process_component_classes(self: Stylesheet, node: DOMNode) -> None:
        parts = node._get_component_classes()
        kept = node._component_styles
        for gone in kept.keys() - parts:
            del kept[gone]
        changed = False
        for part in sorted(parts):
            old = kept.get(part)
            part_node = old.node if old is not None else None
            if old is None or part_node is None:
                part_node = DOMNode(classes=part)
                part_node._attach(node)
                self.apply(part_node, animate=False)
                kept[part] = part_node.styles
                changed = True
                continue
            before = (dict(old.base._rules), dict(old.inline._rules))
            self.apply(part_node, animate=False)
            changed = changed or (old.base._rules, old.inline._rules) != before
        if changed:
            node.refresh()

    process_component_classes._keeps_nodes = True  # type: ignore[attr-defined]
    Stylesheet._process_component_classes = process_component_classes  # type: ignore[method-assign]


ARRANGE_RETURN = "    widgets -= invisible_widgets\n    return map, widgets\n"
"""The end of Textual 8's `Compositor._arrange_root` (dedented), after which its placing function may go."""


def compositor_maps_freed_at_once() -> bool:
    """The compositor's layout lets go of its placing function when it is done.

    `Compositor._arrange_root` places widgets with an inner function that calls itself: the function, the cell
    it is kept in (its own closure) and everything the closure holds (the whole map of the screen, its sets of
    widgets) are a reference cycle made at every layout. A layout during a refresh often outlived a young
    collection, and then waited for the sweep: half of what the soak's console left to the collector after
    its young collections was such maps. The method is Textual's own source with `del add_widget` before its
    return, compiled in its module; where the source is not the one this was written against, Textual's stays
    (False). Upstream: not filed yet."""
    if getattr(Compositor._arrange_root, "_lets_go", False):
        return True
    try:
        lines, first = inspect.getsourcelines(Compositor._arrange_root)
    except (OSError, TypeError):
        return False
    source = "\n" * (first - 1) + textwrap.dedent("".join(lines))  # a traceback shows Textual's line numbers
    if source.count(ARRANGE_RETURN) != 1 or "def add_widget(" not in source:
        return False
    source = source.replace(ARRANGE_RETURN, ARRANGE_RETURN.replace("    return", "    del add_widget\n    return"))
    module = sys.modules[Compositor.__module__]
    flags = __future__.annotations.compiler_flag  # as Textual's module is compiled
    code = compile(source, inspect.getsourcefile(Compositor) or "<compositor>", "exec", flags, dont_inherit=True)
    made: dict[str, Any] = {}
    exec(code, module.__dict__, made)  # noqa: S102 - Textual's own source, one line added
    arrange = made["_arrange_root"]
    arrange._lets_go = True
    Compositor._arrange_root = arrange  # type: ignore[method-assign]
    return True


def text_widths_uncached() -> None:
    """Rich measures a string's width through a cache of the last 4,096 strings under 512 characters, and
    Textual measures every painted line, log line, cell and clock with it. In the soak's console the cache
    turned over 400-1,200 entries a minute: a key, a node and the string it keeps alive, made among a frame's
    short-lived objects and freed minutes later, which pins the allocator's pools and arenas (RSS grows with
    no growth of live objects). A string of printable ASCII is as wide as it is long. Other text (the header's
    connection dot and clock, bars, separators) still missed ~150 times a minute and filled the cache over the
    first half hour, ~1 MB when full: it is measured each time (1-6 us a string, against 0.1 us for a hit).
    Textual binds the cached function by name at import (`textual._cells.cell_len`, and the modules that
    import that); each such name is pointed here."""
    import rich.cells

    cached = rich.cells.cached_cell_len
    if getattr(cached, "_uncached", False):
        return
    measure = rich.cells._cell_len

    def cell_len(text: str, unicode_version: str = "auto") -> int:
        if text.isascii() and text.isprintable():
            return len(text)
        return measure(text, unicode_version)

    cell_len._uncached = True  # type: ignore[attr-defined]
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("rich.", "textual.")):
            continue
        for attr in ("cell_len", "cached_cell_len"):
            if getattr(module, attr, None) is cached:
                setattr(module, attr, cell_len)


def workers_let_go_of_themselves() -> None:
    """A worker's task gives up the worker in its context when it ends.

    Textual runs a worker's task with the worker set in the task's context (`active_worker`), and the worker
    keeps its task: every finished worker was a reference cycle, with its task, context, events and locks, freed
    only by a collection of the generation it had reached. The console starts a few workers a second (the
    refresh, the screens' loaders): ~280 waited for the collector in 90 s of the soak. The task now puts
    `active_worker` back as it found it when the worker's run ends, and the worker goes when it is let go.
    What it found may be the worker that started this one, alive as long as the task is: so nothing may keep
    a finished worker's task, and a thread kept the last thread worker it ran (`JobContextExecutor`).
    Upstream: not filed yet."""
    if getattr(Worker._run, "_lets_go", False):
        return
    run = Worker._run

    async def run_and_let_go(self: Worker[Any], app: App[Any]) -> None:
        token = active_worker.set(self)
        try:
            await run(self, app)
        finally:
            active_worker.reset(token)

    run_and_let_go._lets_go = True  # type: ignore[attr-defined]
    Worker._run = run_and_let_go  # type: ignore[method-assign]


P = ParamSpec("P")
T = TypeVar("T")


class JobContextExecutor(ThreadPoolExecutor):
    """The loop's default executor, running each job in a context of its own that ends with the job.

    `loop.run_in_executor` runs a job in the context of the thread it lands on, and what the job sets there
    stays until another job sets it again. Textual's thread workers set `active_worker` there: each thread kept
    the last thread worker it ran, with the widget that owns it and that widget's screen, dismissed or not.
    (`asyncio.to_thread` brings its own context copy: it runs inside this one, unchanged.)"""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        return super().submit(partial(contextvars.Context().run, fn, *args, **kwargs))


def thread_jobs_keep_nothing(loop: asyncio.AbstractEventLoop) -> None:
    """Make the loop's default executor a `JobContextExecutor`; called before the app's first thread job."""
    loop.set_default_executor(JobContextExecutor(thread_name_prefix="asyncio"))
