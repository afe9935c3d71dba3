"""Builds the lifecycle context the sweeping Lambdas share from settings, templates and GitHub."""

from __future__ import annotations

from typing import Any

from jitrunners.aws.params import ParameterError
from jitrunners.config import ConfigError, RunnerTemplate, get_settings, load_templates
from jitrunners.lifecycle.cleanup import Context, utc_now
from jitrunners.models import JobMessage
from jitrunners.observability import logger

__all__ = ["github_client", "job_status", "lifecycle_context", "utc_now"]


def github_client() -> Any:
    from jitrunners.github.client import get_client

    return get_client(get_settings())


def _templates() -> tuple[RunnerTemplate, ...]:
    try:
        return load_templates(get_settings())
    except (ConfigError, ParameterError) as exc:
        # Cleanup must not stop because the template document is unreadable: without it the
        # registration is searched in both scopes and the default limits apply.
        logger.warning("runner templates unavailable", extra={"detail": str(exc)})
        return ()


def lifecycle_context(*, dry_run: bool = False, waiting: bool = True) -> Context:
    """`waiting=False`: GitHub rate limits raise at once instead of being slept through (a
    periodic sweep leaves the rest to its next run rather than holding the Lambda)."""
    github = github_client() if waiting else github_client().without_waiting()
    return Context.build(get_settings(), _templates(), github, utc_now, dry_run=dry_run)


def job_status(github: Any, message: JobMessage) -> str | None:
    """GitHub's status of the message's job (`queued`, `in_progress`, ...), None when unknown."""
    job = github.get_job(message.repo, message.job_id, message.installation_id)
    return None if job is None else str(job.status)
