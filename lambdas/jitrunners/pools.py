"""Warm pools (README "Warm pools"): a template's `pool` field, its schedule, and its targets.

A template may keep instances ready before any job asks for them:

- `hot`: runners booted, registered with GitHub (a JIT config for no job in particular) and
  idle. GitHub hands a matching queued job to one of them at once. A hot member that idles for
  `hot_max_idle_s` exits (its runner's idle timeout) and is replaced by a fresh one.
- `stopped`: instances booted once (user data run, runner unpacked, SSM agent registered), then
  stopped. A job's launch starts one (an EBS instance stopped costs its volumes only) and gives
  it the job's JIT config once its agent is back online.

`schedule` limits the pool to windows of the week in one time zone; outside them the pool's
target is zero (members are drained: off-hours scale to zero). No schedule: always on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Final

HOT: Final = "hot"
STOPPED: Final = "stopped"
KINDS: Final = (HOT, STOPPED)
# Members per kind and template: above this a pool is a fleet, better served by max_runners.
MAX_MEMBERS: Final = 100
DEFAULT_HOT_MAX_IDLE_S: Final = 3600
MIN_HOT_MAX_IDLE_S: Final = 60
MAX_HOT_MAX_IDLE_S: Final = 86_400
DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_OWNER_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})?")
_CLOCK_RE = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")


@dataclass(frozen=True, slots=True)
class Window:
    """Part of the week the pool is up: `days` (0 = Monday) from `start` to `end` (local time,
    `end` exclusive; `end` None: midnight). `hot`/`stopped` override the pool's counts."""

    days: frozenset[int]
    start: time
    end: time | None
    hot: int | None = None
    stopped: int | None = None

    def covers(self, local: datetime) -> bool:
        if local.weekday() not in self.days:
            return False
        now = local.time().replace(tzinfo=None)
        return self.start <= now and (self.end is None or now < self.end)


@dataclass(frozen=True, slots=True)
class PoolPolicy:
    """A template's `pool` field."""

    hot: int = 0
    stopped: int = 0
    hot_max_idle_s: int = DEFAULT_HOT_MAX_IDLE_S
    timezone: str = "UTC"
    windows: tuple[Window, ...] = ()  # empty: always on
    # The organization hot members register with (they are registered before any job names
    # one); "": the one owner JITRUNNERS_ALLOWED_OWNERS allows.
    owner: str = ""

    @property
    def most(self) -> int:
        """The most members the pool ever wants at once (any window)."""
        counts = [(self.hot, self.stopped)] + [
            (
                self.hot if w.hot is None else w.hot,
                self.stopped if w.stopped is None else w.stopped,
            )
            for w in self.windows
        ]
        return max(h + s for h, s in counts)

    def targets(self, now: datetime) -> dict[str, int]:
        """How many free members of each kind the pool wants at `now` (an aware datetime)."""
        if not self.windows:
            return {HOT: self.hot, STOPPED: self.stopped}
        local = now.astimezone(_zone(self.timezone))
        for window in self.windows:
            if window.covers(local):
                return {
                    HOT: self.hot if window.hot is None else window.hot,
                    STOPPED: self.stopped if window.stopped is None else window.stopped,
                }
        return {HOT: 0, STOPPED: 0}


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MEMBERS:
        raise ValueError(f"{what} must be an integer from 0 to {MAX_MEMBERS}")
    return value


def _clock(value: Any, what: str) -> time | None:
    if not isinstance(value, str) or not _CLOCK_RE.match(value):
        raise ValueError(f"{what} must be a time of day HH:MM (00:00 to 24:00)")
    if value == "24:00":
        return None
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def hot_counts(pool: PoolPolicy) -> list[int]:
    return [pool.hot] + [w.hot for w in pool.windows if w.hot is not None]


def _window(raw: Any, index: int) -> Window:
    where = f"schedule window #{index}"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(set(raw) - {"days", "start", "end", "hot", "stopped"})
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {', '.join(map(repr, unknown))}")
    days = raw.get("days")
    if not isinstance(days, list) or not days or not all(d in DAYS for d in days):
        raise ValueError(f"{where}: 'days' must be a non-empty list of {', '.join(DAYS)}")
    start = _clock(raw.get("start"), f"{where}: 'start'")
    if start is None:
        raise ValueError(f"{where}: 'start' must be before 24:00")
    end = _clock(raw.get("end"), f"{where}: 'end'")
    if end is not None and end <= start:
        raise ValueError(f"{where}: 'end' must be after 'start' (use 24:00 for midnight)")
    return Window(
        days=frozenset(DAYS.index(d) for d in days),
        start=start,
        end=end,
        hot=None if raw.get("hot") is None else _count(raw["hot"], f"{where}: 'hot'"),
        stopped=(
            None if raw.get("stopped") is None else _count(raw["stopped"], f"{where}: 'stopped'")
        ),
    )


def parse_pool(raw: Any) -> PoolPolicy | None:
    """Validate a template's `pool` field (ValueError names the fault); null: no pool."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError("must be an object")
    unknown = sorted(set(raw) - {"hot", "stopped", "hot_max_idle_s", "schedule", "owner"})
    if unknown:
        raise ValueError(f"has unknown field(s) {', '.join(map(repr, unknown))}")
    hot = _count(raw.get("hot", 0), "'hot'")
    stopped = _count(raw.get("stopped", 0), "'stopped'")
    idle = raw.get("hot_max_idle_s", DEFAULT_HOT_MAX_IDLE_S)
    if (
        isinstance(idle, bool)
        or not isinstance(idle, int)
        or not MIN_HOT_MAX_IDLE_S <= idle <= MAX_HOT_MAX_IDLE_S
    ):
        raise ValueError(
            f"'hot_max_idle_s' must be an integer from {MIN_HOT_MAX_IDLE_S} to {MAX_HOT_MAX_IDLE_S}"
        )
    owner = raw.get("owner", "")
    if owner != "" and (not isinstance(owner, str) or not _OWNER_RE.fullmatch(owner)):
        raise ValueError("'owner' must be a GitHub organization login")
    schedule = raw.get("schedule")
    timezone, windows = "UTC", ()
    if schedule is not None:
        if not isinstance(schedule, Mapping):
            raise ValueError("'schedule' must be an object")
        unknown = sorted(set(schedule) - {"timezone", "windows"})
        if unknown:
            raise ValueError(f"'schedule' has unknown field(s) {', '.join(map(repr, unknown))}")
        timezone = schedule.get("timezone", "UTC")
        if not isinstance(timezone, str) or not timezone:
            raise ValueError("'schedule.timezone' must be an IANA time zone name")
        try:
            _zone(timezone)
        except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError on odd names
            raise ValueError(f"'schedule.timezone' {timezone!r} is not an IANA time zone") from None
        raw_windows = schedule.get("windows")
        if not isinstance(raw_windows, list) or not raw_windows:
            raise ValueError("'schedule.windows' must be a non-empty list")
        windows = tuple(_window(w, i) for i, w in enumerate(raw_windows))
    return PoolPolicy(
        hot=hot,
        stopped=stopped,
        hot_max_idle_s=idle,
        timezone=timezone,
        windows=windows,
        owner=owner,
    )
