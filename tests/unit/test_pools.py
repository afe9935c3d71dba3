"""Warm-pool policy: the template's `pool` field, its schedule windows and the targets they give."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jitrunners.config import ConfigError, parse_templates
from jitrunners.models import runner_launched_for, runner_name, runner_path
from jitrunners.pools import parse_pool

BASE = {
    "name": "linux",
    "labels": ["self-hosted", "linux"],
    "launch_template": "lt",
    "instance_types": ["m7i.large"],
    "max_runners": 10,
}


def template(**pool: object) -> dict[str, object]:
    return BASE | {"pool": pool}


def test_a_pool_without_schedule_always_wants_its_members() -> None:
    (parsed,) = parse_templates([template(hot=2, stopped=3)])
    assert parsed.pool is not None
    assert parsed.pool.targets(datetime(2026, 11, 29, 3, 0, tzinfo=UTC)) == {"hot": 2, "stopped": 3}


def test_a_schedule_window_is_read_in_its_time_zone_and_off_hours_are_zero() -> None:
    pool = parse_pool(
        {
            "hot": 3,
            "schedule": {
                "timezone": "Europe/Berlin",
                "windows": [
                    {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "07:00", "end": "19:00"},
                    {"days": ["sat"], "start": "10:00", "end": "24:00", "hot": 1},
                ],
            },
        }
    )
    # Monday 06:30 UTC is 07:30 in Berlin (CET, UTC+1): inside the weekday window.
    assert pool.targets(datetime(2026, 11, 30, 6, 30, tzinfo=UTC))["hot"] == 3
    # Monday 05:59 UTC is 06:59 in Berlin: before the window.
    assert pool.targets(datetime(2026, 11, 30, 5, 59, tzinfo=UTC))["hot"] == 0
    # 18:00 UTC is 19:00 in Berlin: the end is exclusive.
    assert pool.targets(datetime(2026, 11, 30, 18, 0, tzinfo=UTC))["hot"] == 0
    # Saturday 22:59 UTC is 23:59 in Berlin: the Saturday window, with its own count.
    assert pool.targets(datetime(2026, 12, 5, 22, 59, tzinfo=UTC))["hot"] == 1
    # Sunday: no window.
    assert pool.targets(datetime(2026, 12, 6, 12, 0, tzinfo=UTC)) == {"hot": 0, "stopped": 0}
    assert pool.most == 3


@pytest.mark.parametrize(
    ("pool", "fault"),
    [
        ({"hot": -1}, "'hot' must be an integer from 0"),
        ({"hot": True}, "'hot' must be an integer"),
        ({"warm": 1}, "unknown field(s) 'warm'"),
        ({"hot": 1, "hot_max_idle_s": 10}, "'hot_max_idle_s' must be an integer from 60"),
        ({"hot": 1, "schedule": {"windows": []}}, "'schedule.windows' must be a non-empty list"),
        (
            {"hot": 1, "schedule": {"timezone": "Mars/Olympus", "windows": []}},
            "is not an IANA time zone",
        ),
        (
            {
                "hot": 1,
                "schedule": {"windows": [{"days": ["mon"], "start": "9:00", "end": "10:00"}]},
            },
            "'start' must be a time of day HH:MM",
        ),
        (
            {
                "hot": 1,
                "schedule": {"windows": [{"days": ["mon"], "start": "10:00", "end": "09:00"}]},
            },
            "'end' must be after 'start'",
        ),
        (
            {
                "hot": 1,
                "schedule": {"windows": [{"days": ["moon"], "start": "10:00", "end": "11:00"}]},
            },
            "'days' must be a non-empty list of mon",
        ),
    ],
)
def test_a_bad_pool_is_refused_with_its_fault_named(pool: dict[str, object], fault: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_templates([BASE | {"pool": pool}])
    assert "runner template 'linux': field 'pool'" in str(raised.value)
    assert fault in str(raised.value)


def test_a_pool_larger_than_max_runners_is_refused() -> None:
    with pytest.raises(ConfigError, match="wants up to 11 members, more than 'max_runners'"):
        parse_templates([template(hot=6, stopped=5)])


def test_stopped_members_need_a_market_that_allows_on_demand() -> None:
    with pytest.raises(ConfigError, match="stopped members, which need a market"):
        parse_templates([BASE | {"market": "spot", "pool": {"stopped": 1}}])
    (hot_only,) = parse_templates([BASE | {"market": "spot", "pool": {"hot": 1}}])
    assert hot_only.pool is not None
    assert hot_only.pool.hot == 1


@pytest.mark.parametrize("path", ["cold", "stopped", "hot"])
def test_a_runner_name_says_its_path_and_its_job(path: str) -> None:
    name = runner_name("i-0123456789abcdef0", 4242, 2, path)
    assert runner_path(name) == path
    assert runner_launched_for(name) == (None if path == "hot" else (4242, 2))
