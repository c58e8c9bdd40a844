"""The process's memory: the cyclic collector while a large model is built, and freed memory given back."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache


@contextmanager
def collector_paused() -> Iterator[None]:
    """Building 100,000 objects at once makes the cyclic collector walk the growing heap again and again (a
    quarter of the tasks screen's first display with 100,000 tasks). What is built holds no cycles, and
    reference counting frees it; so the collector waits until it is built, and then runs as before."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


TRIM_EVERY = 300.0
"""Seconds between two `give_back_freed_memory` calls in a long-running console."""


@cache
def _glibc(name: str) -> Callable[..., int] | None:
    """One of glibc's malloc calls, or None where the C library is another (musl, macOS)."""
    import ctypes  # here: the console's first frame does without it
    import platform

    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        call: Callable[..., int] = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None
    return call


M_ARENA_MAX = -8
"""glibc's `mallopt` parameter: how many malloc arenas the process may have."""


def one_malloc_arena() -> bool:
    """glibc gives each new thread that allocates a malloc arena of its own (up to 8 per core), and each arena
    keeps what was freed in it for its own next use. The console's threads come and go (gRPC's, SQLite's, the
    executor's, Textual's thread workers), and the soak's console held 13 arenas and 7.8 MB in them, its RSS
    creeping up for an hour. With one arena every thread reuses what any freed, and `malloc_trim` gives back
    one heap. Threads that allocate mostly hold the GIL, so they hardly wait for each other. Called before the
    process starts its threads; False where there is nothing to set."""
    mallopt = _glibc("mallopt")
    return mallopt is not None and mallopt(M_ARENA_MAX, 1) == 1


def give_back_freed_memory() -> tuple[float, float] | None:
    """glibc keeps what a process frees in its arenas, ready for the next allocation: after a peak (a page
    of 10,000 tasks converted in a thread, say) a console that runs for weeks keeps the memory of its worst
    moment. `malloc_trim(0)` hands the free pages back to the kernel. Returns the RSS in MB before and after
    it, or None where the C library has no such call."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return None
    import psutil

    process = psutil.Process()
    before = process.memory_info().rss / 2**20
    trim(0)
    return before, process.memory_info().rss / 2**20


CONSOLE_GEN0_THRESHOLD = 20_000
"""Allocations (net) between two young-generation collections in the console; Python's default is 700."""


def collect_less_often() -> None:
    """The console's collector runs every 20,000 allocations instead of 700. With 100,000 tasks the console
    holds ~400,000 long-lived objects, and a refresh with 1% of them changed makes ~10,000 that live on: at
    700 the collector ran ~20 times a refresh, took a quarter of its CPU (26 ms of 77, bench_tasks) and walked
    the whole heap every ~20 refreshes (170-210 ms of a frozen screen). At 20,000 it took 66 ms over 40
    refreshes instead of 1,048, with no walk of the whole heap. What a refresh makes holds no cycles and
    reference counting frees it; cyclic garbage only waits a little longer."""
    gc.set_threshold(CONSOLE_GEN0_THRESHOLD, *gc.get_threshold()[1:])


@dataclass(frozen=True)
class Sweep:
    freed: int
    """Objects found unreachable."""
    took: float
    """Seconds the console stood still."""
    cpu: float
    """Seconds of CPU: on a loaded machine far less than `took`."""


class OldGarbageSweeper:
    """Collects the oldest generation now and then, at a cost the console can afford.

    With a large heap Python's own rule almost never collects the oldest generation (it waits until a quarter
    as many objects as it holds have moved into it: 0 such collections in 15 minutes of the soak), and the
    middle one only every 10 young collections (minutes apart in the soak). Finished Textual workers and
    dismissed screens are reference cycles that leave the youngest generation before they become garbage, so
    they, and the painted strips and snapshots they hold, stayed: the soak's console grew 14% in 17 minutes.
    A full collection walks the whole heap (170-210 ms with 100,000 tasks), so the sweeper waits at least
    `least_every` seconds and long enough that sweeping takes at most `budget` of a core's time, and skips while
    no collection has run since the last sweep (nothing has left the youngest generation: an idle console). The
    first sweep is due at once: the start's garbage (the login screen, the first paints) goes with the first
    refresh, not a minute into an idle console's life."""

    def __init__(
        self,
        *,
        least_every: float = 60.0,
        budget: float = 0.001,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._least_every = least_every
        self._budget = budget
        self._clock = clock
        self._next = clock()  # the first refresh sweeps what the start left

    def swept(self, *, at: float, cpu: float) -> None:
        self._next = at + max(self._least_every, cpu / self._budget)

    def sweep_if_due(self) -> Sweep | None:
        """What the sweep freed and how long it took, or None when it was not due."""
        now = self._clock()
        if now < self._next:
            return None
        if gc.get_count()[1:] == (0, 0):  # no collection since the last sweep: nothing has left the youngest
            self._next = now + self._least_every
            return None
        started, started_cpu = time.perf_counter(), time.thread_time()
        freed = gc.collect()
        sweep = Sweep(freed, took=time.perf_counter() - started, cpu=time.thread_time() - started_cpu)
        self.swept(at=now, cpu=sweep.cpu)
        return sweep
