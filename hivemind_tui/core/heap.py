"""The cyclic garbage collector while a large model is built."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


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
