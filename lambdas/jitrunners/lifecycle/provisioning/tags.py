"""What an instance's tags say about its jobs: the job it owes (`job-id`, `run-id`, ... rewritten
on a swap), the job it was launched for (`launched-for`) and which launch it was
(`launch-attempt`); and the launches those imply. The one reader and writer of those tags.

A cold instance gets its job tags with its started tags, in the start's one CreateTags after
SendCommand (a lone launch gets them at creation, for free). One CreateFleet launches for several
jobs and its TagSpecifications are common to all, so between its launch and its start an
instance carries only its fleet's tags (prefix, template, Name, sizing): it is `awaiting_start`,
and the `start` message, which names its job and its instance, owes that job until then."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jitrunners import sizing
from jitrunners.aws import fleet
from jitrunners.models import JobMessage, aware_instant, runner_name

if TYPE_CHECKING:
    from jitrunners.config import RunnerTemplate


def template_tags(prefix: str, template: RunnerTemplate) -> dict[str, str]:
    """The tags every instance of a template carries from its creation."""
    return {
        fleet.TAG_PREFIX: prefix,
        fleet.TAG_TEMPLATE: template.name,
        "Name": f"{prefix}-{template.name}",
    }


def fleet_tags(
    prefix: str, template: RunnerTemplate, sizing_labels: tuple[str, ...] = ()
) -> dict[str, str]:
    """The tags a fleet gives every instance it launches: the template's, and the sizing labels
    its jobs share (a fleet launches one sizing)."""
    tags = template_tags(prefix, template)
    if sizing_labels:
        tags[fleet.TAG_SIZING] = sizing.tag_value(sizing_labels)
    return tags


def launched_for_value(message: JobMessage) -> str:
    """The `launched-for` tag of an instance launched for `message`'s job."""
    return f"{message.job_id}/{message.run_attempt}/{message.run_id}/{message.repo}"


def job_tags(message: JobMessage) -> dict[str, str]:
    """The tags that say which job an instance owes (rewritten on a swap)."""
    tags = {
        fleet.TAG_JOB_ID: str(message.job_id),
        fleet.TAG_RUN_ID: str(message.run_id),
        fleet.TAG_RUN_ATTEMPT: str(message.run_attempt),
        fleet.TAG_REPO: message.repo,
        fleet.TAG_DELIVERY_ID: message.delivery_id or "-",
    }
    if message.installation_id is not None:
        tags[fleet.TAG_INSTALLATION_ID] = str(message.installation_id)
    return tags


def launch_tags(message: JobMessage) -> dict[str, str]:
    """Every job tag of a new instance: what it owes, what it was launched for, which launch."""
    return job_tags(message) | {
        fleet.TAG_LAUNCHED_FOR: launched_for_value(message),
        fleet.TAG_LAUNCH_ATTEMPT: str(message.attempt),
    }


def stamp(at: datetime) -> str:
    """A time as the instance's time tags carry it (`started-at`, `claimed-at`)."""
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def started_tags(command_id: str, at: datetime, runner_name: str) -> dict[str, str]:
    """The tags that say an instance's runner was started: its command, when, and its name."""
    return {
        fleet.TAG_COMMAND_ID: command_id,
        fleet.TAG_STARTED_AT: stamp(at),
        fleet.TAG_RUNNER_NAME: runner_name,
    }


def cold_start_tags(
    message: JobMessage,
    command_id: str,
    at: datetime,
    runner_name: str,
    carried: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What a cold instance's start writes in its one CreateTags: every job tag (launch_tags)
    and the started tags. `carried` are the instance's tags when the start described it: job
    tags already there are a swap booked before this write (the runner took a job first) or a
    lone launch's own, and are kept, never overwritten."""
    tags = launch_tags(message)
    if (carried or {}).get(fleet.TAG_JOB_ID):
        tags = {k: v for k, v in tags.items() if k not in job_tags(message)}
    return tags | started_tags(command_id, at, runner_name)


def awaiting_start(instance: Any) -> bool:
    """A live cold instance between its launch and its start: no job tags and no command yet.
    Its `start` message owes its job; it will take some queued job of its template."""
    return (
        getattr(instance, "state", "") in fleet.LIVE_STATES
        and not getattr(instance, "command_id", None)
        and getattr(instance, "job_id", None) is None
        and not (getattr(instance, "tags", None) or {}).get(fleet.TAG_POOL)
    )


def launch_attempt(instance: Any) -> int:
    """Which launch of its job the instance was (its `launch-attempt` tag; 1 when absent)."""
    value = str((getattr(instance, "tags", None) or {}).get(fleet.TAG_LAUNCH_ATTEMPT, "1"))
    return max(1, int(value)) if value.isdigit() else 1


def _launched_for_key(instance: Any) -> tuple[int, int, int, str] | None:
    """(job id, run attempt, run id, repo) from the `launched-for` tag; None if absent or bad."""
    parts = str((instance.tags or {}).get(fleet.TAG_LAUNCHED_FOR, "")).split("/", 3)
    if len(parts) == 4 and all(p.isdigit() for p in parts[:3]) and parts[3].count("/") == 1:
        return int(parts[0]), int(parts[1]), int(parts[2]), parts[3]
    return None


def runner_name_of(instance: Any) -> str:
    """The name the instance's runner registers with: as start wrote it, else as start names it
    from the job the instance was launched for (models.runner_name), else the instance id."""
    tags = instance.tags or {}
    written = str(tags.get(fleet.TAG_RUNNER_NAME, ""))
    if written:
        return written
    pool = str(tags.get(fleet.TAG_POOL, ""))
    key = _launched_for_key(instance)
    if key is None:
        return runner_name(instance.id, None, None, "hot") if pool == "hot" else str(instance.id)
    return runner_name(instance.id, key[0], key[1], "stopped" if pool == "stopped" else "cold")


def _owed_key(instance: Any) -> tuple[int, int, int, str] | None:
    """(job id, run attempt, run id, repo) of the job the instance's job tags say it owes."""
    run_id = str((instance.tags or {}).get(fleet.TAG_RUN_ID, ""))
    repo = str(instance.repo or "")
    if instance.job_id is None or not run_id.isdigit() or repo.count("/") != 1:
        return None
    return instance.job_id, instance.run_attempt or 1, int(run_id), repo


def _next_launch(
    instance: Any, template: RunnerTemplate, key: tuple[int, int, int, str], delivery_id: str
) -> JobMessage:
    job_id, run_attempt, run_id, repo = key
    return JobMessage(
        kind="launch",
        job_id=job_id,
        run_id=run_id,
        run_attempt=run_attempt,
        repo=repo,
        owner=repo.split("/", 1)[0],
        installation_id=instance.installation_id,
        # The template's labels (a superset of the job's fixed ones, all scale-up needs to pick
        # it) and a sized job's sizing labels, kept in the instance's sizing tag.
        labels=template.labels
        + sizing.from_tag(str((getattr(instance, "tags", None) or {}).get(fleet.TAG_SIZING, ""))),
        template=template.name,
        delivery_id=delivery_id,
        queued_at="",
        attempt=launch_attempt(instance) + 1,
    )


def launched_for(instance: Any, template: RunnerTemplate | None) -> JobMessage | None:
    """A `launch` for the job the instance was launched for; None when its tags do not say."""
    if template is None:
        return None
    # Launched before the tag existed: its job tags still say why, unless a swap rewrote them.
    key = _launched_for_key(instance) or _owed_key(instance)
    if key is None:
        return None
    return _next_launch(instance, template, key, f"passed-on-{instance.id}")


def owed_launch(instance: Any, template: RunnerTemplate | None) -> JobMessage | None:
    """A `launch` for the job the instance's job tags say it owes (after any swap); None when
    they do not say enough."""
    key = _owed_key(instance)
    if template is None or key is None:
        return None
    delivery_id = str((instance.tags or {}).get(fleet.TAG_DELIVERY_ID, ""))
    if delivery_id in ("", "-"):
        delivery_id = f"relaunch-{instance.id}"
    return _next_launch(instance, template, key, delivery_id)


def took_another_job(instance: Any) -> bool:
    """Whether the instance's runner took a job other than the one it was launched for (a swap
    booked by rewriting its job tags)."""
    key = _launched_for_key(instance)
    return key is not None and key[:2] != (instance.job_id, instance.run_attempt)


def booting_for(instance: Any, now: datetime) -> float:
    """Seconds since the instance was launched, or since it was started again when it is a
    stopped pool member claimed for a job (its `claimed-at` tag)."""
    if instance is None or instance.launch_time is None:
        return 0.0
    since = instance.launch_time
    claimed = aware_instant(instance.tags.get(fleet.TAG_CLAIMED_AT, ""))
    if claimed is not None and claimed > since:
        since = claimed
    return (now - since).total_seconds()


def command_age(instance: Any, now: datetime) -> float | None:
    """Seconds since the instance's runner command was sent (`started_at`, its `started-at`
    tag, written with the command id right after SendCommand), or None when the tag is missing
    or unreadable."""
    sent = aware_instant(str(getattr(instance, "started_at", None) or ""))
    return None if sent is None else (now - sent).total_seconds()
