"""Whole-log comparison, as a follower of HiveMind's GetTasklog needs it (its log is not append-only)."""

from __future__ import annotations

from hivemind_tui.services.log_follow import fresh_lines

OUTPUT = [f"line {i}" for i in range(1, 6)]
HEADER = "--- Task Output ---"


def test_output_that_grows_gives_the_new_lines_once() -> None:
    assert fresh_lines([], [HEADER, *OUTPUT[:2]]) == [HEADER, *OUTPUT[:2]]
    assert fresh_lines([HEADER, *OUTPUT[:2]], [HEADER, *OUTPUT[:4]]) == OUTPUT[2:4]
    assert fresh_lines([HEADER, *OUTPUT[:4]], [HEADER, *OUTPUT[:4]]) == []


def test_a_system_line_inserted_above_the_output_is_new_and_nothing_repeats() -> None:
    shown = [HEADER, *OUTPUT[:3]]
    stop = "[2026-12-01 10:00:00] [system] 任務 t 已被用戶 alice 請求停止"
    assert fresh_lines(shown, [stop, HEADER, *OUTPUT[:3], "收到停止請求，立即終止任務 t"]) == [
        stop,
        "收到停止請求，立即終止任務 t",
    ]


def test_a_cut_at_the_start_loses_nothing_new_and_repeats_nothing() -> None:
    shown = [HEADER, *OUTPUT[:4]]
    assert fresh_lines(shown, [HEADER, *OUTPUT[2:]]) == ["line 5"]  # the 10 KiB window moved on


def test_repeated_identical_lines_are_counted_not_merged() -> None:
    assert fresh_lines(["tick", "tick"], ["tick", "tick", "tick"]) == ["tick"]
