"""How many of our instances a launch counts: one DescribeInstances every few seconds per
container, plus what the container launched since (README "Scaling", "Headcount").

Every launch batch must know how many runners are live (`max_runners`, per template and in all),
which live instance owes which job (a redelivered job's duplicate) and which pool members are
ready. Listing them costs one DescribeInstances of every live instance: in a burst, a batch of
ten launches each, of a list that grows with the burst (at 10,000 live instances, ten pages of
1,000 per batch against EC2's non-mutating bucket). So a container lists at most once every
`headcount_max_age_s` and counts its own launches since on top of that list. What such a count
can get wrong, and what the caller does about it:

* instances ended since the list: counted still, so the count is high. A batch that would defer
  for want of room lists again first (`needs_fresh`), so nothing waits on a stale count;
* instances other containers launched since: not counted, so `max_runners` can be exceeded by
  what they launched within the age (at most the event source's other invocations' batches),
  as it could before by two invocations listing at the same moment;
* a job's holder, a duplicate or a swap: decided on a fresh list only (`needs_fresh`), and the
  container's own tag writes (a start's job tags, a swap's) are applied to the kept list;
* pool members (ready, claimed, parked): a batch of a pooled template lists afresh, and a
  batch that replaced members forgets the list.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from jitrunners.aws import fleet
from jitrunners.config import RunnerTemplate


class Headcount:
    """The container's last list of our instances (by id) and its own launches since."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._at: float | None = None
        self._listed: dict[str, fleet.Instance] = {}

    def listing(
        self,
        describe: Callable[[], list[fleet.Instance]],
        max_age_s: float,
        *,
        fresh: bool = False,
    ) -> tuple[list[fleet.Instance], bool]:
        """Our instances and whether they were described just now (`describe`): the kept list
        while it is younger than `max_age_s` (0: always described), with the launches since."""
        now = self._clock()
        if fresh or self._at is None or max_age_s <= 0 or now - self._at >= max_age_s:
            self.forget()  # a failed describe keeps nothing
            listed = describe()
            self._listed, self._at = {i.id: i for i in listed}, now
            return list(listed), True
        return list(self._listed.values()), False

    def launched(self, instances: Iterable[fleet.Instance]) -> None:
        """Count the container's own launches until the next list (which has them)."""
        if self._at is not None:
            self._listed.update((i.id, i) for i in instances)

    def retagged(self, instance_id: str, tags: Mapping[str, str]) -> None:
        """Keep the list as EC2 has it after the container wrote `tags` on an instance."""
        instance = self._listed.get(instance_id)
        if instance is not None:
            self._listed[instance_id] = fleet.retagged(instance, tags)

    def forget(self) -> None:
        """The next batch lists afresh."""
        self._at = None
        self._listed = {}


def room(template: RunnerTemplate, mine: int, total: int, max_runners: int) -> int:
    """Instances the template may still launch with `mine` of its own and `total` in all counted:
    under its max_runners and the global one."""
    return max(0, min(template.max_runners - mine, max_runners - total))


def needs_fresh(
    jobs: Sequence[tuple[int | None, int | None]],
    holders: Iterable[tuple[int | None, int | None]],
    pooled: bool,
    wanted: dict[str, int],
    room: Callable[[str], int],
    room_in_all: int,
) -> bool:
    """Whether a batch must not decide on a kept list: a job of it has a holder there (a
    duplicate or a swap is decided on what EC2 says now), a template of it has a warm pool, or
    it would defer launches for want of room (`wanted` launches per template against
    `room(template)`, and all of them against `room_in_all`)."""
    if pooled:
        return True
    held = set(holders)
    if any(job in held for job in jobs):
        return True
    if sum(wanted.values()) > room_in_all:
        return True
    return any(count > room(name) for name, count in wanted.items())


# One per container: scale-up's launches.
HEADCOUNT = Headcount()


def tag_instance(instance_id: str, tags: Mapping[str, str]) -> None:
    """Write tags on one of our instances (one CreateTags), and keep the container's list so."""
    fleet.tag_instance(instance_id, dict(tags))
    HEADCOUNT.retagged(instance_id, tags)


def reset() -> None:
    """Forget the container's list: the next launch batch lists our instances afresh (after it
    launched pool members, whose tags decide pool serving; and for tests, as a new process)."""
    HEADCOUNT.forget()
