"""The one backoff policy: doubling to a cap, jitter within its bounds, reset, bounded retries."""

from __future__ import annotations

import pytest

from hivemind_tui.core.retry import Backoff, retry


def test_delays_double_up_to_the_cap_and_reset() -> None:
    backoff = Backoff(base=0.5, cap=3.0, jitter=0.5, rng=lambda: 0.5)  # rng 0.5: exactly the nominal delay
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 0.5), (1.0, 1.5)])
def test_jitter_spreads_each_delay_between_its_bounds(draw: float, expected: float) -> None:
    assert Backoff(base=1.0, cap=8.0, jitter=0.5, rng=lambda: draw).next_delay() == pytest.approx(expected)


def test_no_jitter_is_exact() -> None:
    assert Backoff(base=2.0, cap=4.0, jitter=0.0).next_delay() == 2.0


@pytest.mark.parametrize(("base", "cap", "jitter"), [(0.0, 1.0, 0.5), (2.0, 1.0, 0.5), (1.0, 2.0, 1.0)])
def test_bad_policies_are_refused(base: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError, match="bad backoff"):
        Backoff(base=base, cap=cap, jitter=jitter)


async def test_retry_returns_the_first_success_after_failures() -> None:
    calls: list[int] = []
    seen: list[str] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"down {len(calls)}")
        return "up"

    result = await retry(
        flaky, Backoff(0.001, 0.002), attempts=5, retry_on=ConnectionError, on_retry=lambda e: seen.append(str(e))
    )
    assert result == "up" and len(calls) == 3 and seen == ["down 1", "down 2"]


async def test_retry_gives_up_after_its_attempts() -> None:
    calls: list[int] = []

    async def down() -> None:
        calls.append(1)
        raise ConnectionError

    assert await retry(down, Backoff(0.001, 0.002), attempts=4, retry_on=ConnectionError) is None
    assert len(calls) == 4


async def test_retry_raises_other_errors_at_once() -> None:
    calls: list[int] = []

    async def broken() -> None:
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await retry(broken, Backoff(0.001, 0.002), attempts=4, retry_on=ConnectionError)
    assert len(calls) == 1
