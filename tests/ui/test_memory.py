"""Weeks in tmux: walking the screens and refreshing must not grow the Python heap.

It did: each dismissed screen stayed in memory through the App watchers it had registered, and each
footer recompose left its FooterKeys bound to `compact` (ui/hive.py `forget_gone_watchers`).
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
import weakref

from rich.segment import Segment
from textual._styles_cache import StylesCache
from textual.app import App, ComposeResult
from textual.cache import FIFOCache
from textual.color import Color
from textual.containers import Vertical
from textual.dom import DOMNode
from textual.map_geometry import MapGeometry
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Label
from textual.worker import Worker

from hivemind_tui.core.heap import OldGarbageSweeper
from hivemind_tui.services.monitor import ClusterSnapshot
from hivemind_tui.ui.textual_fixes import (
    component_styles_kept,
    compositor_maps_freed_at_once,
    release_styles_caches,
    strips_do_not_cache_themselves,
)
from tests.helpers import old_cyclic_garbage
from tests.ui.demo_shots import demo_app, settle

WALK = ("d", "n", "v", "u", "escape", "t", "enter", "escape")
RENDER_CACHES = [
    tracemalloc.Filter(False, f"*/{name}")
    for name in (
        "textual/strip.py",
        "textual/_compositor.py",
        "textual/_styles_cache.py",
        "textual/filter.py",
        "textual/content.py",
        "textual/style.py",
        "textual/visual.py",
        "rich/segment.py",
        "rich/style.py",
        "textual/cache.py",
    )
]
# The snapshots themselves, and the tuples of painted segments (made by generated `__new__` code).
RENDER_CACHES += [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<string>")]


def unreachable_now() -> list[object]:
    """Everything a full collection finds unreachable now: what only the cyclic collector would free."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return list(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def live_widgets() -> int:
    gc.collect()
    return sum(isinstance(o, Widget) for o in gc.get_objects())


async def test_walking_the_screens_and_refreshing_keeps_the_heap_flat() -> None:
    app = demo_app(nodes=50)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)

        async def walk() -> None:
            for key in WALK:
                await pilot.press(key)
                await pilot.pause(0.05)
            app.action_refresh()
            await pilot.pause(0.1)

        # Traced from the start, and render caches left out: Textual's caches of painted lines (strips,
        # segments, styles) fill up to their sizes and turn over as the screens repaint; what is measured is
        # what stays: widgets, screens, our own objects.
        tracemalloc.start(1)
        try:
            for _ in range(3):
                await walk()
            widgets = live_widgets()
            before = tracemalloc.take_snapshot().filter_traces(RENDER_CACHES)
            for _ in range(2):
                await walk()
            widgets_after = live_widgets()
            after = tracemalloc.take_snapshot().filter_traces(RENDER_CACHES)
        finally:
            tracemalloc.stop()
        stats = after.compare_to(before, "filename")
        grown = sum(stat.size_diff for stat in stats)
        top = "; ".join(f"{stat.traceback[0].filename}: {stat.size_diff / 1e3:.0f} KB" for stat in stats[:5])
        # Every dismissed screen and old footer key is gone (a leak was ~160 widgets a walk); a toast that
        # is still showing may add one or two.
        assert widgets_after <= widgets + 10, (widgets, widgets_after)
        assert grown < 2 * 150_000, f"the heap grew {grown / 1e3:.0f} KB over 2 walks: {top}"


class Churn(App[None]):
    """Widgets come and go, as toasts, footer keys and dismissed screens do in the console."""

    def compose(self) -> ComposeResult:
        yield Vertical(id="list")

    async def rebuild(self) -> None:
        box = self.query_one("#list", Vertical)
        await box.remove_children()
        await box.mount_all(Label(f"card {i}") for i in range(40))


async def test_gone_widgets_do_not_stay_in_memory_through_their_styles_caches() -> None:
    """Textual 8 caches `StylesCache.get_inner_outer` with the instance in the key (Textualize/textual#6665),
    so the last 1,024 widgets' style caches, every painted line of them included, stayed alive after the
    widgets were gone: megabytes that grew for the console's first hours."""
    release_styles_caches()
    app = Churn()
    async with app.run_test(size=(60, 50)) as pilot:
        for _ in range(15):
            await app.rebuild()
            await pilot.pause()
        gc.collect()
        caches = sum(isinstance(o, StylesCache) for o in gc.get_objects())
        widgets = live_widgets()
    assert caches <= widgets + 5, (caches, widgets)


async def test_a_refresh_leaves_no_snapshot_in_cyclic_garbage() -> None:
    """A finished Textual worker is a reference cycle (its task's context holds it), freed only by a collection
    of the oldest generation, which a console with a large heap seldom runs: a worker started with a snapshot
    as its argument kept that snapshot (every node of the fleet) alive until then. The soak's console held a
    dozen snapshots of 1,000 nodes that way, ~5 MB more every few minutes."""
    app = demo_app(nodes=50)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        for key in ("t", "d"):  # the tasks screen shows snapshots too, once it was opened
            await pilot.press(key)
            await settle(pilot)
        gc.collect()
        gc.disable()
        try:
            for _ in range(4):
                before = app.snapshot
                app.action_refresh()
                await settle(pilot)
                assert app.snapshot is not before
            garbage = [o for o in unreachable_now() if isinstance(o, ClusterSnapshot)]
        finally:
            gc.enable()
    assert garbage == []


async def test_the_console_sweeps_old_cyclic_garbage_after_its_refreshes() -> None:
    """Finished workers and dismissed screens leave the youngest generation before they become garbage, and
    with a large heap Python's own rule almost never collects the oldest: the soak's console grew 14% in 17
    minutes. The console's refreshes sweep when the sweeper says it is due."""
    clock = [0.0]
    app = demo_app(nodes=50)
    app.sweeper = OldGarbageSweeper(least_every=60.0, budget=1.0, clock=lambda: clock[0])
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        gc.disable()  # only a sweep may free it, not a collection Python decides on
        try:
            gone = old_cyclic_garbage()
            gc.collect(1)
            app.action_refresh()
            await settle(pilot)
            assert gone() is not None  # a minute has not passed since the first refresh swept
            clock[0] = 61.0
            app.action_refresh()
            await settle(pilot)
            assert gone() is None
        finally:
            gc.enable()


def in_its_own_cache(strip: Strip) -> bool:
    caches = [r for r in gc.get_referents(strip) if isinstance(r, FIFOCache)]
    held = [v for c in caches for d in gc.get_referents(c) if isinstance(d, dict) for v in d.values()]
    return any(v is strip or (isinstance(v, list) and any(x is strip for x in v)) for v in held)


def strips_in_cycles_of_their_own() -> int:
    """Strips that only a collection of reference cycles could free because they hold themselves, made since the
    collector last ran (a strip held by other garbage, a dropped toast's painted lines, does not count)."""
    return sum(isinstance(o, Strip) and in_its_own_cache(o) for o in unreachable_now())


async def test_painted_strips_are_freed_as_soon_as_they_are_dropped() -> None:
    """Textual's `Strip.divide` and `Strip.crop_extend` keep a strip in its own cache when the answer is the strip
    itself (a line one widget wide, a crop of all of it): every such strip was a reference cycle, freed only by a
    collection of the generation it had reached. The compositor divides every line it paints, so the soak's
    console left ~2,000 strips a minute (with their segments, styles and seven caches each, ~3.9 MiB in 90 s) to
    wait for the collector: several MB of garbage at a time, that set the heap's high-water mark."""
    strips_do_not_cache_themselves()
    strip = Strip([Segment("abc")], 3)
    assert strip.divide([3]) == [strip] and strip.crop_extend(0, 3, None) is strip
    assert strip.divide([1, 3])[0].text == "a" and strip.crop_extend(1, 5, None).text == "bc  "
    gc.collect()
    gc.disable()
    try:
        del strip
        assert strips_in_cycles_of_their_own() == 0
        app = demo_app(nodes=50)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            strips_in_cycles_of_their_own()
            for key in ("t", "d", "n", "d"):
                await pilot.press(key)
                await settle(pilot)
                app.action_refresh()
                await settle(pilot)
            left = strips_in_cycles_of_their_own()
    finally:
        gc.enable()
    assert left == 0


async def test_a_finished_worker_is_freed_when_it_is_let_go() -> None:
    """A Textual worker's task runs with the worker in its context (`active_worker`), and the worker keeps its
    task: every finished worker was a reference cycle (with its task, context, events and locks), freed only by
    a collection. The console starts a few a second (each refresh, the screens' loaders), ~280 in 90 s of the
    soak, all waiting for the collector. (The app applies the fix when it is made.)"""
    app = demo_app(nodes=50)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        gc.collect()
        gc.disable()
        try:
            for key in ("t", "d"):
                await pilot.press(key)
                await settle(pilot)
                app.action_refresh()
                await settle(pilot)
            left = sum(isinstance(o, Worker) for o in unreachable_now())
        finally:
            gc.enable()
    assert left == 0


async def test_a_finished_thread_worker_is_not_kept_by_its_thread() -> None:
    """Textual sets `active_worker` in the context of the executor's thread, which outlives the job: each
    thread kept the last thread worker it ran, its node and that node's screen. With the worker's own cycle
    gone, that held a dismissed task screen (31 widgets) through its log's size worker, 1 walk in ~10 of
    `test_walking_the_screens_and_refreshing_keeps_the_heap_flat`."""
    app = demo_app(nodes=5)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        worker = app.run_worker(lambda: None, thread=True)
        await worker.wait()
        await pilot.pause()
        gone = weakref.ref(worker)
        del worker
        gc.collect()
        assert gone() is None


def test_measuring_text_keeps_no_copy_of_it() -> None:
    """Rich's width cache kept every string under 512 characters that Textual measured (the last 4,096), and
    the soak's console turned it over 400-1,200 times a minute (clocks, ages, figures, log lines): entries made
    among a frame's short-lived objects and freed minutes later pin the allocator's pools. Printable ASCII is
    as wide as it is long. Other text (the header's connection dot and clock, bars, separators: ~150 strings
    a minute on the soak's walk, ~170 bytes each) filled the cache over the first half hour, ~1 MB when full;
    it is measured each time now (1-6 us a string)."""
    import rich.cells
    import rich.segment
    import textual._cells
    import textual._compositor
    import textual.content

    demo_app()  # the console applies its Textual fixes as it is made
    plain = f"cpu 42.0% at {id(object())}"
    wide = f"节点 ● {id(object())} · ▁▂▃"
    held = [sys.getrefcount(plain), sys.getrefcount(wide)]
    measures = (
        rich.cells.cell_len,
        rich.cells.cached_cell_len,
        rich.segment.cached_cell_len,
        textual._cells.cell_len,
        textual._compositor.cell_len,
        textual.content.cell_len,
    )
    assert [measure(plain) for measure in measures] == [len(plain)] * len(measures)
    assert [measure(wide) for measure in measures] == [len(wide) + 2] * len(measures)
    assert [sys.getrefcount(plain), sys.getrefcount(wide)] == held
    assert [measure("tab\there") for measure in measures] == [7] * len(measures)


class Parts(Widget):
    """A widget with a component class, styled by its parent's class, as the console's tables and footer keys
    are (their parts follow focus, hover and the screen's classes)."""

    COMPONENT_CLASSES = {"parts--part"}

    def render(self) -> str:
        return self.get_component_styles("parts--part").color.hex


class Restyled(App[None]):
    CSS = """
    Parts .parts--part { color: blue; }
    .alt Parts .parts--part { color: red; }
    """

    def compose(self) -> ComposeResult:
        with Vertical(id="box"):
            yield Parts()


async def test_restyling_a_widget_keeps_its_parts_styles_without_making_garbage() -> None:
    """Each time Textual applies the stylesheet to a widget with component classes (its parts: a table's
    cursor, a footer key's key), it made a node for each part, attached it to the widget, and dropped the
    last ones: reference cycles (a node and its styles, with a dozen objects each) left to the collector. On
    the soak's walk they were the largest share of the console's cyclic garbage (306 such nodes in 3
    minutes). Each part keeps its node, whose rules are applied again."""
    component_styles_kept()
    app = Restyled()
    async with app.run_test(size=(40, 5)) as pilot:
        box, parts = app.query_one("#box"), app.query_one(Parts)
        await pilot.pause()
        unreachable_now()
        for _ in range(10):
            box.toggle_class("alt")
            await pilot.pause()
        gone = [o for o in unreachable_now() if type(o) is DOMNode and o.parent is parts]  # not other tests'
        assert parts.render() == Color.parse("blue").hex
        box.add_class("alt")
        await pilot.pause()
        assert parts.render() == Color.parse("red").hex
    assert gone == []


async def test_laying_a_screen_out_leaves_no_map_for_the_collector() -> None:
    """Textual's compositor places widgets with a function that calls itself, made anew at each layout: the
    function, its closure and the whole map it fills were a reference cycle, and a layout in the middle of a
    refresh often outlived a young collection, so each map waited minutes for the sweep (half the objects the
    soak's console left to it). The function now lets go of itself when the layout is done."""
    compositor_maps_freed_at_once()
    app = Churn()
    async with app.run_test(size=(60, 50)) as pilot:
        await app.rebuild()
        await pilot.pause()
        unreachable_now()
        for _ in range(5):
            app.screen._refresh_layout(app.size)
            await pilot.pause()
        maps = [o for o in unreachable_now() if isinstance(o, MapGeometry)]
        assert len(app.screen._compositor.full_map) > 40  # the map itself is whole
    assert maps == []
