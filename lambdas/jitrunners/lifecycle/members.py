"""Warm pool membership (README "Warm pools"), read from an instance's state and tags: which
members are free, which are ready, which are parked. Shared by every stage: provisioning serves
and launches members, teardown and recovery must tell a parked member from an ended runner."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jitrunners.aws import fleet
from jitrunners.pools import HOT, STOPPED


def free_members(
    instances: Sequence[fleet.Instance], template: str, kind: str | None = None
) -> list[fleet.Instance]:
    """A template's members no job has taken, ready or getting ready (not ending)."""
    return [
        i
        for i in instances
        if i.template == template
        and fleet.free_member(i)
        and (kind is None or fleet.pool_of(i) == kind)
        and i.state not in fleet.GONE_STATES
    ]


def ready_hot(instances: Sequence[fleet.Instance], template: str) -> list[fleet.Instance]:
    """Hot members whose runner is registered and waiting for a job."""
    return [
        i for i in free_members(instances, template, HOT) if i.state == "running" and i.command_id
    ]


def ready_stopped(instances: Sequence[fleet.Instance], template: str) -> list[fleet.Instance]:
    """Stopped members ready to be started for a job."""
    return [i for i in free_members(instances, template, STOPPED) if i.state == "stopped"]


def parked(instance: Any) -> bool:
    """A stopped pool member no job has claimed: stopped on purpose, not ended."""
    return bool(
        fleet.free_member(instance)
        and fleet.pool_of(instance) == STOPPED
        and not getattr(instance, "command_id", None)
    )
