"""Freed memory goes back to the system: a console that ran through a peak does not keep its size."""

from __future__ import annotations

import gc
import platform
import random
import subprocess
import sys
import weakref

from hivemind_tui.core.heap import OldGarbageSweeper, give_back_freed_memory, one_malloc_arena
from tests.helpers import Cycle, extra_malloc_arenas, old_cyclic_garbage


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


THREADS_THAT_ALLOCATE = """
import sys, threading
from hivemind_tui.core.heap import one_malloc_arena
if sys.argv[1] == "one":
    assert one_malloc_arena()
def work():
    kept = [bytearray(8000) for _ in range(200)]  # above Python's small-object size: glibc's malloc
    done.wait()
done = threading.Event()
threads = [threading.Thread(target=work) for _ in range(6)]
for thread in threads:
    thread.start()
print("allocated", flush=True)
sys.stdin.readline()
done.set()
"""


def extra_arenas(mode: str) -> int:
    """The arenas of a process whose six threads hold memory from glibc's malloc."""
    proc = subprocess.Popen(
        [sys.executable, "-c", THREADS_THAT_ALLOCATE, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "allocated\n"
        return extra_malloc_arenas(proc.pid)
    finally:
        proc.communicate("\n", timeout=30)
        assert proc.returncode == 0


def test_one_malloc_arena_keeps_new_threads_from_taking_their_own() -> None:
    """glibc gives each new thread that allocates an arena of its own (up to 8 per core), and each arena keeps
    what was freed in it: the soak's console had 13, holding 7.8 MB."""
    if platform.libc_ver()[0] != "glibc":
        assert not one_malloc_arena()  # nothing to set: it says so
        return
    assert extra_arenas("default") >= 2  # what the measure sees without it
    assert extra_arenas("one") == 0


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
