"""The latency bench's `--curve` mode: its job curve and the schedule window it writes.

The windows are read back by the Lambdas' own pool parser and asked for their targets minute by
minute, so a window that does not cover exactly [open, close) on the real clock fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bench.pool_curve import PEAK_END, RAMP_UP, daily_curve, drain, next_open, window_spec

from jitrunners.pools import parse_pool


def on_between(windows: list[dict[str, object]], start: datetime, end: datetime) -> list[bool]:
    """The pool's hot target > 0, every 30 s from `start` until `end` (exclusive)."""
    policy = parse_pool({"hot": 2, "schedule": {"timezone": "UTC", "windows": windows}})
    assert policy is not None
    found, at = [], start
    while at < end:
        found.append(policy.targets(at)["hot"] > 0)
        at += timedelta(seconds=30)
    return found


@pytest.mark.parametrize(
    ("opens", "minutes", "pieces"),
    [
        (datetime(2026, 11, 30, 20, 11, tzinfo=UTC), 3, 1),  # a Monday evening
        (datetime(2026, 11, 30, 23, 57, tzinfo=UTC), 3, 1),  # ends at 24:00 exactly
        (datetime(2026, 11, 30, 23, 58, tzinfo=UTC), 3, 2),  # crosses midnight: split
        (datetime(2026, 12, 6, 23, 59, tzinfo=UTC), 5, 2),  # Sunday into Monday
    ],
)
def test_the_window_is_on_from_its_opening_to_its_close_and_nowhere_else(
    opens: datetime, minutes: int, pieces: int
) -> None:
    windows = window_spec(opens, minutes)
    closes = opens + timedelta(minutes=minutes)
    assert len(windows) == pieces
    assert on_between(windows, opens, closes) == [True] * (2 * minutes)
    assert not any(on_between(windows, opens - timedelta(minutes=10), opens))
    assert not any(on_between(windows, closes, closes + timedelta(minutes=10)))
    # A week later the same window is on again; a day later it is not (days are named).
    assert all(on_between(windows, opens + timedelta(days=7), closes + timedelta(days=7)))
    assert not any(on_between(windows, opens + timedelta(days=1), closes + timedelta(days=1)))


def test_a_window_opens_on_a_whole_minute_at_least_the_lead_after_now() -> None:
    now = datetime(2026, 11, 30, 23, 59, 10, 500, tzinfo=UTC)
    opens = next_open(now, 60)
    assert opens == datetime(2026, 12, 1, 0, 1, tzinfo=UTC)
    assert next_open(datetime(2026, 11, 30, 10, 0, tzinfo=UTC), 60) == now.replace(
        day=30, hour=10, minute=1, second=0, microsecond=0
    )
    with pytest.raises(ValueError, match="whole minute"):
        window_spec(now, 3)


def test_the_curve_is_seeded_and_shaped_like_a_working_day() -> None:
    window = 180.0
    curve = daily_curve(60, 4, window, seed=7)
    assert curve == daily_curve(60, 4, window, seed=7)
    assert curve != daily_curve(60, 4, window, seed=8)
    times = [job.at_s for job in curve]
    assert times == sorted(times)
    phases = [job.phase for job in curve]
    assert phases.count("before") == phases.count("after") == 4
    assert all(-30 <= j.at_s < 0 for j in curve if j.phase == "before")
    assert all(window <= j.at_s < window + 30 for j in curve if j.phase == "after")
    inside = [j.at_s / window for j in curve if 0 <= j.at_s < window]
    assert len(inside) == 60
    # Jobs per unit of time: the peak has the most, the first and last tenths the fewest.
    peak = sum(RAMP_UP <= u < PEAK_END for u in inside) / (PEAK_END - RAMP_UP)
    first = sum(u < 0.1 for u in inside) / 0.1
    last = sum(u >= 0.9 for u in inside) / 0.1
    assert peak > 2 * first
    assert peak > 2 * last


def test_the_drain_is_read_from_the_samples_around_the_close() -> None:
    close = 100.0
    # (time, free members, all members): 3 free at the close; one gone before a pass, the
    # others by the pass at 101.5; a busy member lasts until 104.
    samples = [(99.8, 3, 4), (100.5, 2, 3), (101.0, 2, 3), (102.0, 0, 1), (104.0, 0, 0)]
    found = drain(samples, close, passes=[94.0, 101.5, 107.5], scale=0.25)
    assert found == {
        "free_at_close": 3,
        "members_at_close": 4,
        "free_zero_after_s": 8.0,  # 2 real s
        "housekeeper_passes": 1,
        "all_members_gone_after_s": 16.0,
    }
    # A free member still up at the last sample: the drain is not over.
    late = drain([*samples, (105.0, 1, 1)], close, passes=[101.5], scale=0.25)
    assert late["free_zero_after_s"] is None
    assert late["housekeeper_passes"] is None
    # Nothing free at the close: gone at once, no pass needed.
    empty = drain([(99.0, 0, 0), (100.5, 0, 0)], close, passes=[101.5], scale=0.25)
    assert (empty["free_zero_after_s"], empty["housekeeper_passes"]) == (0.0, 0)
