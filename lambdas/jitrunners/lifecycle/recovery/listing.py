"""The housekeeper's list of our instances: the live ones every pass, the ended ones as they end.

A pass needs the ended instances EC2 still lists (a terminated one for about an hour): their tags
name the scopes that may hold leftover registrations, the repositories to reconcile and the
runners whose end nobody explained. Describing all of them at every pass grew with the hour's
jobs, not with the fleet: at 10,000 jobs an hour, ten pages of a thousand instances a pass, and in
the local stack's 10,000-job burst a third of the whole run's CPU (README "Scaling").

So a container keeps the ended instances it has described. A pass describes the instances not
ended (one listing filtered by state) and, by id, those its last pass listed live that are no
longer among them: they ended since, and their end is read once. An instance that was launched
and ended between two passes of this container is not seen that way: the full listing, at a
container's first pass and again once `housekeeper_full_listing_s` has passed, finds it (and
forgets what EC2 no longer lists). Its recovery (a lost end's relaunch, a leftover parameter or
registration) waits at most that long; the reconciliation's queued-job check does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from jitrunners.aws import fleet
from jitrunners.lifecycle.cleanup import ENDED_STATES, Context

NOT_ENDED: Final = tuple(s for s in fleet.ALL_STATES if s not in ENDED_STATES)


@dataclass
class _Memory:
    listed_at: datetime | None = None  # the last full listing
    live: set[str] = field(default_factory=set)  # not ended at the container's last pass
    ended: dict[str, fleet.Instance] = field(default_factory=dict)


_MEMORY = _Memory()


def our_instances(ctx: Context, now: datetime) -> list[fleet.Instance]:
    """Our instances in every state EC2 lists: the live ones as described now, the ended ones as
    described when this container first saw them ended (an ended instance no longer changes)."""
    prefix = ctx.settings.prefix
    profile = ctx.settings.runner_instance_profile_arn
    every = timedelta(seconds=ctx.settings.housekeeper_full_listing_s)
    last = _MEMORY.listed_at
    if last is None or not last <= now < last + every:
        instances = fleet.list_instances(prefix, fleet.ALL_STATES, profile_arn=profile)
        _MEMORY.listed_at = now
        _MEMORY.ended = {i.id: i for i in instances if i.state in ENDED_STATES}
    else:
        instances = fleet.list_instances(prefix, NOT_ENDED, profile_arn=profile)
        listed = {i.id for i in instances}
        gone = sorted(_MEMORY.live - listed)
        # An id EC2 no longer lists at all is forgotten: so would a full listing.
        for instance in fleet.list_by_ids(prefix, gone, profile_arn=profile):
            if instance.state in ENDED_STATES:
                _MEMORY.ended[instance.id] = instance
            elif instance.id not in listed:
                instances.append(instance)  # it changed state between the two calls
                listed.add(instance.id)
        instances.extend(i for i in _MEMORY.ended.values() if i.id not in listed)
    _MEMORY.live = {i.id for i in instances if i.state not in ENDED_STATES}
    return instances


def reset() -> None:
    """Forget the container's listings (a new process, for tests)."""
    _MEMORY.listed_at = None
    _MEMORY.live.clear()
    _MEMORY.ended.clear()
