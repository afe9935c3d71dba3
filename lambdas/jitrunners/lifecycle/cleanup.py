"""End one runner's life: terminate its instance, delete its JIT parameter and its registration."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from jitrunners.aws import fleet, ssm
from jitrunners.aws.clients import error_code
from jitrunners.config import RunnerTemplate, Settings
from jitrunners.lifecycle.provisioning.tags import runner_name_of
from jitrunners.observability import MetricUnit, count, logger, observe

# States in which an instance no longer runs anything and needs no TerminateInstances call.
ENDED_STATES = frozenset({"shutting-down", "terminated"})


def utc_now() -> datetime:
    return datetime.now(UTC)


class GitHubPort(Protocol):
    """The part of `jitrunners.github.client.GitHubClient` the sweeping Lambdas use."""

    def find_runner(self, scope: Any, name: str, installation_id: int | None) -> Any: ...

    def list_runners(self, scope: Any, installation_id: int | None) -> Iterable[Any]: ...

    def delete_runner(self, scope: Any, runner_id: int, installation_id: int | None) -> bool: ...

    def get_job(self, repo: str, job_id: int, installation_id: int | None) -> Any: ...

    def rerun_job(self, repo: str, job_id: int, installation_id: int | None) -> None: ...

    def list_runs(self, repo: str, status: str, installation_id: int | None) -> Iterable[Any]: ...

    def list_run_jobs(
        self, repo: str, run_id: int, installation_id: int | None
    ) -> Iterable[Any]: ...

    def list_installations(self) -> Iterable[Any]: ...

    def list_deliveries(self, since: datetime) -> Iterable[Any]: ...

    def redeliver(self, delivery_id: int) -> None: ...


@dataclass(frozen=True)
class Context:
    """What every sweeping decision needs: settings, templates by name, GitHub and the time."""

    settings: Settings
    templates: Mapping[str, RunnerTemplate]
    github: GitHubPort
    clock: Callable[[], datetime] = utc_now
    dry_run: bool = False

    @classmethod
    def build(
        cls,
        settings: Settings,
        templates: Iterable[RunnerTemplate],
        github: GitHubPort,
        clock: Callable[[], datetime] = utc_now,
        *,
        dry_run: bool = False,
    ) -> Context:
        return cls(settings, {t.name: t for t in templates}, github, clock, dry_run)


@dataclass
class CleanupResult:
    """What one cleanup did; `incomplete` lists steps that failed and must be retried."""

    instance_id: str
    terminated: bool = False
    parameter_deleted: bool = False
    runners_deleted: int = 0
    incomplete: list[str] = field(default_factory=list)


class CleanupIncomplete(RuntimeError):
    """A step failed transiently; the caller retries (the whole cleanup is idempotent)."""


def runner_scopes(instance: Any, templates: Mapping[str, RunnerTemplate]) -> list[Any]:
    """Where the instance's runner was registered: the template's scope and the repo tag.

    When the template is no longer configured we cannot know which scope was used, so both are
    searched: a registration is found by its name, which only our instance can carry.
    """
    from jitrunners.aws.fleet import TAG_OWNER
    from jitrunners.github.client import RunnerScope

    repo = str(getattr(instance, "repo", "") or "")
    template = templates.get(str(getattr(instance, "template", "") or ""))
    if repo.count("/") != 1:
        # A hot pool member that took no job yet registered in its pool's organization.
        owner = str((getattr(instance, "tags", None) or {}).get(TAG_OWNER, ""))
        return [RunnerScope("org", owner)] if owner else []
    owner = repo.split("/", maxsplit=1)[0]
    kinds = [template.scope] if template else ["org", "repo"]
    return [
        RunnerScope("org", owner) if kind == "org" else RunnerScope("repo", owner, repo)
        for kind in kinds
    ]


def deregister_idle(instance: Any, ctx: Context) -> None:
    """Delete the instance's runner registration unless the runner is busy, before the instance
    is ended, so that a runner that took a job meanwhile is never killed: GitHub refuses (422) to
    delete a busy runner. Raises the client's GitHubError when the runner is busy (status 422) or
    GitHub cannot be asked: then the caller leaves the instance be."""
    from jitrunners.github.client import GitHubError

    for scope in runner_scopes(instance, ctx.templates):
        runner = ctx.github.find_runner(scope, runner_name_of(instance), instance.installation_id)
        if runner is None:
            continue
        if runner.busy:
            raise GitHubError("runner is busy", status=422)
        ctx.github.delete_runner(scope, runner.id, instance.installation_id)


def cleanup(
    instance: Any,
    reason: str,
    ctx: Context,
    *,
    terminate: bool = True,
    registrations: bool = True,
    parameter: bool = True,
    recheck: bool = True,
) -> CleanupResult:
    """Terminate (when asked and still needed), delete the parameter (unless the caller deletes
    it with others, as scale-down's batches do: `parameter=False`), delete the registration
    (unless the caller already did, or GitHub removed it: `registrations=False`).
    `recheck=False` terminates the instance as this invocation described it, without describing
    it again: only where nothing else may be ending it meanwhile (a terminate of an instance EC2
    has just ended, which no longer carries our instance profile, is refused by our own policy).

    Each step tolerates the thing being gone already, so running this twice, or after another
    Lambda did part of it, is harmless. A failing step does not stop the others.
    """
    instance_id = str(instance.id)
    result = CleanupResult(instance_id)
    prefix = ctx.settings.prefix
    extra = {"instance_id": instance_id, "reason": reason, "dry_run": ctx.dry_run}

    if terminate and str(getattr(instance, "state", "")) not in ENDED_STATES:
        if ctx.dry_run:
            logger.info("would terminate instance", extra=extra)
        else:
            try:
                if not recheck and isinstance(instance, fleet.Instance):
                    # Described by this invocation (ours by tag and profile): no second look.
                    done = fleet.terminate_described([instance], prefix)
                else:
                    done = fleet.terminate(
                        [instance_id], prefix, ctx.settings.runner_instance_profile_arn
                    )
            except (ClientError, BotoCoreError, fleet.ThrottledError) as exc:
                result.incomplete.append(f"terminate:{error_code(exc) or type(exc).__name__}")
            else:
                result.terminated = instance_id in set(done or ())
                if result.terminated:
                    count("Terminations", reason=reason)
                    _observe_lifetime(instance, ctx)
                    logger.info("instance terminated", extra=extra)

    param = ctx.settings.jit_param_name(instance_id)
    if parameter and ctx.dry_run:
        logger.info("would delete JIT parameter if present", extra={**extra, "parameter": param})
    elif parameter:
        try:
            result.parameter_deleted = ssm.delete_parameter(param)
        except (ClientError, BotoCoreError) as exc:
            result.incomplete.append(f"parameter:{error_code(exc) or type(exc).__name__}")
        else:
            if result.parameter_deleted:
                logger.info("JIT parameter deleted", extra={**extra, "parameter": param})

    if registrations:
        result.runners_deleted = _delete_registrations(instance, reason, ctx, result)

    if result.incomplete:
        count("CleanupIncomplete", reason=reason)
        logger.warning("cleanup incomplete", extra={**extra, "failed": result.incomplete})
    return result


# TerminateInstances takes up to 1,000 instance ids per call.
TERMINATE_CHUNK = 1000


def terminate_batch(ends: Iterable[tuple[Any, str]], ctx: Context) -> list[str]:
    """Terminate the described instances of ours a batch decided to end, (instance, reason)
    pairs, in one TerminateInstances call per 1,000 ids; returns the ids that could not be
    terminated (their events are retried). An instance already ending needs no call.

    The instances were described at the start of the batch: one that EC2 ended meanwhile no
    longer carries our instance profile, and our own policy refuses the whole call for it. Then
    the chunk is described again and only what is still live is terminated (a second try).
    """
    pending = [
        (instance, reason)
        for instance, reason in ends
        if str(getattr(instance, "state", "")) not in ENDED_STATES
    ]
    if ctx.dry_run:
        for instance, reason in pending:
            logger.info(
                "would terminate instance",
                extra={"instance_id": instance.id, "reason": reason, "dry_run": True},
            )
        return []
    prefix = ctx.settings.prefix
    failed: list[str] = []
    for start in range(0, len(pending), TERMINATE_CHUNK):
        chunk = pending[start : start + TERMINATE_CHUNK]
        ids = [str(instance.id) for instance, _ in chunk]
        try:
            done = fleet.terminate_described([instance for instance, _ in chunk], prefix)
        except (ClientError, BotoCoreError, fleet.ThrottledError) as first:
            logger.info(
                "batch terminate refused: describing again",
                extra={"detail": error_code(first) or type(first).__name__, "count": len(ids)},
            )
            try:
                done = fleet.terminate(ids, prefix, ctx.settings.runner_instance_profile_arn)
            except (ClientError, BotoCoreError, fleet.ThrottledError) as exc:
                code = error_code(exc) or type(exc).__name__
                for _instance, reason in chunk:
                    count("CleanupIncomplete", reason=reason)
                logger.warning(
                    "batch terminate failed", extra={"failed": f"terminate:{code}", "ids": ids}
                )
                failed.extend(ids)
                continue
        terminated = set(done or ())
        for instance, reason in chunk:
            if instance.id not in terminated:
                continue  # ended by someone else meanwhile (the second try saw it gone)
            count("Terminations", reason=reason)
            _observe_lifetime(instance, ctx)
            logger.info(
                "instance terminated",
                extra={
                    "instance_id": instance.id,
                    "reason": reason,
                    "dry_run": False,
                    "template": getattr(instance, "template", None),
                    "job_id": getattr(instance, "job_id", None),
                },
            )
    return failed


def _delete_registrations(instance: Any, reason: str, ctx: Context, result: CleanupResult) -> int:
    from jitrunners.github.client import GitHubError

    instance_id = str(instance.id)
    installation_id = getattr(instance, "installation_id", None)
    deleted = 0
    for scope in runner_scopes(instance, ctx.templates):
        extra = {"instance_id": instance_id, "reason": reason, "scope": scope.path}
        try:
            runner = ctx.github.find_runner(scope, runner_name_of(instance), installation_id)
            if runner is None:
                continue
            if ctx.dry_run:
                logger.info("would delete runner registration", extra=extra)
                continue
            if ctx.github.delete_runner(scope, runner.id, installation_id):
                deleted += 1
                count("RunnersDeleted", reason=reason)
                logger.info("runner registration deleted", extra=extra)
        except GitHubError as exc:
            result.incomplete.append(f"runner:{getattr(exc, 'status', None) or type(exc).__name__}")
    return deleted


def _observe_lifetime(instance: Any, ctx: Context) -> None:
    launched = getattr(instance, "launch_time", None)
    if isinstance(launched, datetime):
        seconds = max(0.0, (ctx.clock() - launched).total_seconds())
        observe("InstanceLifetime", seconds, MetricUnit.Seconds)
