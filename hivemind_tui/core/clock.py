"""Time as a parameter: everything that reads the clock takes a `Clock`, so tests can move time."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]

system_clock: Clock = time.time
