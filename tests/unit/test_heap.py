"""Freed memory goes back to the system: a console that ran through a peak does not keep its size."""

from __future__ import annotations

import gc
import platform
import random

from hivemind_tui.core.heap import give_back_freed_memory


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
