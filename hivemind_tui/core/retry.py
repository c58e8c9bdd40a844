"""One backoff policy for everything that retries a peer: the console's pool client, a worker's reports to
the pool, and a worker's registration and heartbeats.

Delays double from `base` up to `cap`, and each is spread by `jitter` (0.5: between half and one and a half
times the nominal delay) so that many clients that failed together do not retry together.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Backoff:
    """The delays of one retrying caller; `reset()` after a success starts again from `base`."""

    base: float
    cap: float
    jitter: float = 0.5
    rng: Callable[[], float] = random.random
    _nominal: float = field(init=False)

    def __post_init__(self) -> None:
        if not (0 < self.base <= self.cap) or not (0 <= self.jitter < 1):
            raise ValueError(f"bad backoff: base {self.base}, cap {self.cap}, jitter {self.jitter}")
        self._nominal = self.base

    def next_delay(self) -> float:
        """The wait before the next try; the one after it is twice as long, up to the cap."""
        delay = self._nominal * (1 - self.jitter + 2 * self.jitter * self.rng())
        self._nominal = min(self._nominal * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._nominal = self.base


async def retry(
    call: Callable[[], Awaitable[T]],
    backoff: Backoff,
    attempts: int,
    retry_on: type[BaseException] | tuple[type[BaseException], ...],
    on_retry: Callable[[BaseException], None] = lambda error: None,
) -> T | None:
    """Call until it returns, at most `attempts` times, waiting `backoff` between tries; None if all failed.

    Only `retry_on` errors are retried; any other error is raised at once.
    """
    for attempt in range(attempts):
        try:
            return await call()
        except retry_on as error:
            on_retry(error)
        if attempt + 1 < attempts:
            await asyncio.sleep(backoff.next_delay())
    return None
