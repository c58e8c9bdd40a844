"""Freed memory goes back to the system: a console that ran through a peak does not keep its size."""

from __future__ import annotations

import gc
import platform
import random
import weakref

from hivemind_tui.core.heap import OldGarbageSweeper, give_back_freed_memory
from tests.helpers import Cycle, old_cyclic_garbage


def test_memory_freed_after_a_peak_is_given_back_to_the_system() -> None:
    if platform.libc_ver()[0] != "glibc":
        assert give_back_freed_memory() is None  # nothing to call: it says so
        return
    rng = random.Random(7)
    kept = []
    for _ in range(4):  # a peak of ~100 MB of strings too big for Python's own allocator, a few of them kept
        peak = ["x" * rng.randint(600, 2000) for _ in range(80_000)]
        kept += peak[::50]
        del peak
    gc.collect()
    sizes = give_back_freed_memory()
    assert sizes is not None
    before, after = sizes
    assert before - after > 20, sizes
    assert len(kept) == 4 * 1600


def test_the_sweeper_sweeps_at_once_then_at_most_once_a_minute() -> None:
    """The first refresh sweeps what the start left (the login screen, the first paints): an idle console that
    has started costs nothing more."""
    clock = [0.0]
    sweeper = OldGarbageSweeper(least_every=60.0, budget=1.0, clock=lambda: clock[0])
    started = old_cyclic_garbage()
    gc.collect(1)  # what Python's young collections do: objects move up, and the old generation waits
    assert sweeper.sweep_if_due() is not None
    assert started() is None
    gone = old_cyclic_garbage()
    gc.collect(1)
    clock[0] = 59.0
    assert sweeper.sweep_if_due() is None  # not yet: a minute at least between two sweeps
    assert gone() is not None
    clock[0] = 61.0
    sweep = sweeper.sweep_if_due()
    assert sweep is not None and sweep.took >= 0 and sweep.cpu >= 0 and sweep.freed >= 1
    assert gone() is None


def test_the_sweeper_frees_cycles_that_a_young_collection_moved_up_and_that_died_since() -> None:
    """A dismissed screen lived through young collections, so it is no longer in the youngest generation when
    it becomes garbage; the middle one is collected every 10 young collections, minutes apart in the soak.
    Any young collection since the last sweep is reason enough for the next."""
    gc.collect()
    clock = [0.0]
    sweeper = OldGarbageSweeper(least_every=60.0, budget=1.0, clock=lambda: clock[0])
    sweeper.swept(at=0.0, cpu=0.0)
    screen = Cycle()
    gone = weakref.ref(screen)
    gc.collect(0)  # it is alive: the collection moves it up a generation
    del screen
    assert gone() is not None
    clock[0] = 61.0
    assert sweeper.sweep_if_due() is not None
    assert gone() is None


def test_the_sweeper_waits_longer_when_a_sweep_is_costly_and_skips_when_no_collection_ran_since() -> None:
    clock = [0.0]
    sweeper = OldGarbageSweeper(least_every=60.0, budget=0.001, clock=lambda: clock[0])
    sweeper.swept(at=0.0, cpu=0.2)  # a large heap: 200 ms a sweep is at most 0.1% of a core every 200 s
    gc.collect(1)
    clock[0] = 150.0
    assert sweeper.sweep_if_due() is None
    clock[0] = 201.0
    assert sweeper.sweep_if_due() is not None
    clock[0] = 10_000.0
    gc.collect()  # a full collection already ran: nothing has left the youngest generation since
    assert sweeper.sweep_if_due() is None
