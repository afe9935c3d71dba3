"""Which runner template takes a job, and whether a repository may use our runners at all."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from jitrunners.config import RunnerTemplate, Settings
from jitrunners.models import WorkflowJob
from jitrunners.sizing import sizing_labels, split_key


def match_template(
    labels: Iterable[str], templates: Sequence[RunnerTemplate]
) -> RunnerTemplate | None:
    """The first template whose labels contain all of the job's labels (case-insensitive), its
    sizing labels (`cpu=4`, ...) aside when the template admits sizing: the fixed labels pick the
    template, the sizing labels are then checked against its policy (`sizing.parse`).

    A job without labels matches nothing: an empty `runs-on` must not grab a runner.
    """
    labels = tuple(labels)
    wanted = frozenset(label.casefold() for label in labels)
    if not wanted:
        return None
    for template in templates:
        fixed = template.labels_folded
        if template.sizing is not None:
            wanted_fixed = wanted - {s.casefold() for s in sizing_labels(labels, fixed)}
            if wanted_fixed and wanted_fixed <= fixed:
                return template
        elif wanted <= fixed:
            return template
    return None


def sizing_not_enabled(labels: Iterable[str], templates: Sequence[RunnerTemplate]) -> bool:
    """Whether a job no template matched would match one of them without its sizing labels:
    it asked for sizing from templates that do not admit it (a clearer refusal than
    `no_template`)."""
    fixed = frozenset(lbl.casefold() for lbl in labels if split_key(lbl) is None)
    return bool(fixed) and any(fixed <= t.labels_folded for t in templates)


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
