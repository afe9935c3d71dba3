"""Client-side shaping of GitHub calls: what this process knows of each budget's limits.

GitHub refuses a call once an installation's (or an App's) hourly budget is spent, while a
secondary limit's `retry-after` runs, and beyond 900 points a minute (GET 1, other methods 5;
README "Scaling"). A call it would refuse is held back here, before it is sent: the client raises
GitHubRateLimited with the wait, the caller puts its SQS record back for that long, and GitHub
sees no request it must refuse (repeated refusals are what GitHub answers with longer blocks).

The points are counted in a sliding 60 s window, as GitHub counts them, not a refilling bucket: a
bucket of 900 refilling 15 a second admits up to 1,800 points within one minute. The window holds
this process's calls only; the response headers (`x-ratelimit-*`, `retry-after`) bring in what
the other processes sharing a budget spent.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping

POINTS_PER_MINUTE = 900  # GitHub's secondary limit per App installation
WINDOW_S = 60.0
READ_POINTS = 1  # GET, HEAD, OPTIONS
WRITE_POINTS = 5  # POST, PATCH, PUT, DELETE
CORE = "core"
# generate-jitconfig and registration tokens also spend this hourly budget (GET /rate_limit).
REGISTRATION = "actions_runner_registration"


def points(method: str) -> int:
    return READ_POINTS if method.upper() in ("GET", "HEAD", "OPTIONS") else WRITE_POINTS


class Shaper:
    """Per budget key ("installation 42", "app 7", "token"): the points spent in the last minute,
    the hourly budgets GitHub said are spent (until their reset), and a secondary limit's
    `retry-after`. Thread-safe: one per process, shared by every client copy."""

    def __init__(
        self, points_per_minute: int = POINTS_PER_MINUTE, clock: Callable[[], float] = time.time
    ) -> None:
        self.points_per_minute = points_per_minute  # 0: no window (headers only)
        self._clock = clock
        self._lock = threading.Lock()
        self._window: dict[str, deque[tuple[float, int]]] = {}
        self._spent: Counter[str] = Counter()
        self._reset_at: dict[tuple[str, str], float] = {}  # (budget, resource) -> epoch
        self._blocked_until: dict[str, float] = {}  # budget -> epoch
        self.held: Counter[str] = Counter()  # calls held back, by reason

    def admit(self, budget: str, method: str, resource: str = CORE) -> float:
        """0.0 when the call may go (its points are then counted), else the seconds until it
        could (nothing counted)."""
        wait, reason = self._wait(budget, method, resource, take=True)
        if wait > 0:
            self.held[reason] += 1
        return wait

    def spend(self, budget: str, method: str) -> None:
        """Count a call that goes anyway (its caller slept the wait `admit` named)."""
        if self.points_per_minute <= 0:
            return
        now = self._clock()
        with self._lock:
            self._window.setdefault(budget, deque()).append((now, points(method)))
            self._spent[budget] += points(method)

    def would_admit(self, budget: str, method: str, resource: str = CORE) -> bool:
        return self._wait(budget, method, resource, take=False)[0] == 0.0

    def _wait(self, budget: str, method: str, resource: str, *, take: bool) -> tuple[float, str]:
        now = self._clock()
        with self._lock:
            blocked = self._blocked_until.get(budget, 0.0) - now
            if blocked > 0:
                return blocked, "secondary"
            for res in {CORE, resource}:
                reset = self._reset_at.get((budget, res))
                if reset is not None and reset > now:
                    return reset - now, "primary" if res == CORE else "registration"
            cost = points(method)
            if self.points_per_minute <= 0:
                return 0.0, ""
            window = self._window.setdefault(budget, deque())
            while window and window[0][0] <= now - WINDOW_S:
                self._spent[budget] -= window.popleft()[1]
            excess = self._spent[budget] + cost - self.points_per_minute
            if excess > 0:
                freed = 0
                for at, spent in window:
                    freed += spent
                    if freed >= excess:
                        return max(0.001, at + WINDOW_S - now), "points"
                return WINDOW_S, "points"  # more than a minute's points in one call
            if take:
                window.append((now, cost))
                self._spent[budget] += cost
            return 0.0, ""

    def observe(
        self, budget: str, status: int, headers: Mapping[str, str], wait_s: float | None
    ) -> None:
        """Learn from an answer: its `x-ratelimit-*` headers, and a rate-limit refusal's wait
        (`wait_s`, from `retry-after`, the reset or GitHub's one-minute fallback)."""
        now = self._clock()
        resource = headers.get("x-ratelimit-resource") or CORE
        remaining, reset = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-reset")
        with self._lock:
            if remaining == "0" and reset:
                with contextlib.suppress(ValueError):
                    self._reset_at[(budget, resource)] = float(reset)
            elif remaining is not None:
                self._reset_at.pop((budget, resource), None)
            if wait_s is not None and status in (403, 429) and remaining != "0":
                # A secondary limit: nothing of this budget goes before its retry-after.
                until = now + math.ceil(wait_s)
                self._blocked_until[budget] = max(self._blocked_until.get(budget, 0.0), until)
