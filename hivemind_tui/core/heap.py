"""The process's memory: the cyclic collector while a large model is built, and freed memory given back."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes  # here: the console's first frame does without it

    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc (musl, macOS): nothing to call
        return None
    return trim


def give_back_freed_memory() -> tuple[float, float] | None:
    """glibc keeps what a process frees in its arenas, ready for the next allocation: after a peak (a page
    of 10,000 tasks converted in a thread, say) a console that runs for weeks keeps the memory of its worst
    moment. `malloc_trim(0)` hands the free pages back to the kernel. Returns the RSS in MB before and after
    it, or None where the C library has no such call."""
    trim = _malloc_trim()
    if trim is None:
        return None
    import psutil

    process = psutil.Process()
    before = process.memory_info().rss / 2**20
    trim(0)
    return before, process.memory_info().rss / 2**20
