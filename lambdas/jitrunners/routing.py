"""Which runner template takes a job, and whether a repository may use our runners at all."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from jitrunners.config import RunnerTemplate, Settings
from jitrunners.models import WorkflowJob


def match_template(
    labels: Iterable[str], templates: Sequence[RunnerTemplate]
) -> RunnerTemplate | None:
    """The first template whose labels contain all of the job's labels (case-insensitive).

    A job without labels matches nothing: an empty `runs-on` must not grab a runner.
    """
    wanted = frozenset(label.casefold() for label in labels)
    if not wanted:
        return None
    for template in templates:
        if wanted <= template.labels_folded:
            return template
    return None


def refusal(job: WorkflowJob, settings: Settings) -> str | None:
    """Why this job's repository may not use our runners, or None when it may.

    ALLOWED_OWNERS and ALLOWED_REPOS are independent filters (both must pass; empty = all).
    Public repositories are refused unless ALLOW_PUBLIC_REPOS: a self-hosted runner there would
    run code from anyone who can open a pull request.
    """
    why = allowlist_refusal(job.owner, job.repo, settings)
    if why:
        return why
    if not job.private and not settings.allow_public_repos:
        return "public_repo"
    return None


def allowlist_refusal(owner: str, repo: str, settings: Settings) -> str | None:
    """Why ALLOWED_OWNERS / ALLOWED_REPOS refuse this repository, or None when they admit it.

    Checked at intake and again by scale-up for every job message, so a narrowed allowlist also
    stops jobs already queued or waiting in the DLQ.
    """
    if settings.allowed_owners and owner.casefold() not in settings.allowed_owners:
        return "owner_not_allowed"
    if settings.allowed_repos and repo.casefold() not in settings.allowed_repos:
        return "repo_not_allowed"
    return None
