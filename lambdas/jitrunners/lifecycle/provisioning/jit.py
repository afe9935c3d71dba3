"""A runner's JIT config: asked of GitHub once per instance and stored in the instance's
SecureString parameter, where the runner script reads (and deletes) it.

A cold launch asks for it right after CreateFleet, while the instance boots (`ahead_of_boot`),
so that GitHub's points are spent as early as the burst allows and a start after boot only sends
the command; whatever GitHub cannot take now (its budget, an error) is left to the start, which
asks as before."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jitrunners.aws import ssm
from jitrunners.config import MAX_LABELS, RunnerTemplate
from jitrunners.github.client import GitHubClient, GitHubError, GitHubRateLimited, RunnerScope
from jitrunners.lifecycle.records import RecordFailed, ScaleUpDeps, correlated
from jitrunners.models import COLD, JobMessage, runner_name
from jitrunners.observability import count, logger
from jitrunners.sizing import sizing_labels


def scope_of(template: RunnerTemplate, message: JobMessage) -> RunnerScope:
    return RunnerScope(template.scope, message.owner, message.repo)


def runner_labels(message: JobMessage, template: RunnerTemplate) -> tuple[str, ...]:
    """The labels a runner registers with: the template's, and a sized job's own sizing labels,
    so that only jobs asking for that size (or for none) take it."""
    if template.sizing is None:
        return template.labels
    extra = sizing_labels(message.labels, template.labels_folded)
    return template.labels + tuple(dict.fromkeys(extra))[: MAX_LABELS - len(template.labels)]


@dataclass(frozen=True, slots=True)
class Registration:
    """What GitHub registers a runner with: where, its name, labels and group, and the App
    installation that asks."""

    scope: RunnerScope
    name: str
    labels: tuple[str, ...]
    runner_group_id: int
    installation_id: int | None


def _for_job(message: JobMessage, template: RunnerTemplate, instance_id: str) -> Registration:
    """The registration of the runner that `message`'s job gets on `instance_id`."""
    return Registration(
        scope_of(template, message),
        runner_name(instance_id, message.job_id, message.run_attempt, message.pool or COLD),
        runner_labels(message, template),
        template.runner_group_id,
        message.installation_id,
    )


def store_for_job(
    message: JobMessage, template: RunnerTemplate, instance_id: str, deps: ScaleUpDeps
) -> None:
    """The JIT config of the runner that `message`'s job gets on `instance_id` (RecordFailed
    to retry when GitHub refuses or fails)."""
    store_jit_config(deps, instance_id, _for_job(message, template, instance_id))


def ahead_of_boot(
    launched: Sequence[tuple[JobMessage, str]], template: RunnerTemplate, deps: ScaleUpDeps
) -> set[str]:
    """JIT configs for freshly launched instances, while they boot; returns the instance ids
    whose config is stored. Stops at the first rate limit (GitHub's budget is spent for now:
    the starts ask later, from SQS); any other failure leaves that one to its start."""
    stored: set[str] = set()
    github = deps.github().once()  # no back-off here: a failure is the start's to retry
    for message, instance_id in launched:
        with correlated(message, instance_id=instance_id):
            try:
                _store(github, deps, instance_id, _for_job(message, template, instance_id))
            except GitHubRateLimited:
                logger.info("JIT configs left to the starts: GitHub's budget is spent for now")
                break
            except Exception as exc:  # noqa: BLE001 - the start stores it instead
                logger.warning(
                    "JIT config not stored ahead of boot: left to the start",
                    extra={"detail": type(exc).__name__},
                )
                continue
        stored.add(instance_id)
    if stored:
        count("JitConfigAheadOfBoot", len(stored))
    return stored


class JitRateLimited(RecordFailed):
    """GitHub's rate limit refused the JIT config: nothing was asked of the instance."""


def store_jit_config(deps: ScaleUpDeps, instance_id: str, registration: Registration) -> None:
    """A JIT config from GitHub into the instance's SecureString parameter (RecordFailed to
    retry when GitHub refuses or fails)."""
    try:
        _store(deps.github(), deps, instance_id, registration)
    except GitHubRateLimited as exc:
        count("StartFailed", reason="github_rate_limited")
        logger.warning(
            "GitHub rate limit: start retried later", extra={"wait_s": exc.retry_after_s}
        )
        raise JitRateLimited("github rate limited", max(1, round(exc.retry_after_s))) from None
    except GitHubError as exc:
        count("StartFailed", reason=f"github_{exc.status or 'unavailable'}")
        logger.warning("cannot generate the JIT config", extra={"detail": str(exc)})
        raise RecordFailed("github error", 30 if exc.retryable else None) from None


def _store(
    github: GitHubClient, deps: ScaleUpDeps, instance_id: str, registration: Registration
) -> None:
    scope, installation_id = registration.scope, registration.installation_id
    jit = github.generate_jitconfig(
        scope,
        registration.name,
        registration.labels,
        registration.runner_group_id,
        installation_id,
    )
    stored = ssm.put_jit_config(
        deps.settings.jit_param_name(instance_id),
        jit.encoded,
        deps.instance_arn(instance_id),
        deps.settings.jit_kms_key_id,
    )
    if not stored:
        # A concurrent start stored one first: ours is surplus and must not linger on GitHub.
        github.delete_runner(scope, jit.runner_id, installation_id)
        logger.info("JIT config already stored by another start; surplus registration deleted")
