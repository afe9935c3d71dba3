"""The security boundary scale-up enforces before it launches: the allowlist, and the runner group.

Org runners are fungible: a runner registered for an allowed repository takes any queued job its
runner group admits. So the allowlist at intake only decides what we launch for; what a runner may
run is decided by its runner group, which must be limited to selected repositories and refuse
public ones (DESIGN §3b).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jitrunners.config import RunnerTemplate, Settings
from jitrunners.models import JobMessage
from jitrunners.observability import count, logger
from jitrunners.routing import allowlist_refusal

if TYPE_CHECKING:
    from jitrunners.github.client import GitHubClient, RunnerGroup

# A safe group is asked about once per process. An unsafe one is asked again after this long, so
# that a warm Lambda notices the operator's fix without a redeploy.
UNSAFE_RECHECK_S = 300.0


@dataclass(frozen=True, slots=True)
class _Verdict:
    problem: str | None
    checked_at: float


_verdicts: dict[tuple[str, int], _Verdict] = {}


def reset() -> None:
    """Forget every runner-group verdict (tests; a new process starts empty anyway)."""
    _verdicts.clear()


def refused_repository(message: JobMessage, settings: Settings) -> str | None:
    """Why the allowlist no longer admits the message's repository (logged and counted), or None.

    Only owner and repository are in a job message; whether the repository is public is the
    runner group's to enforce (below).
    """
    why = allowlist_refusal(message.owner, message.repo, settings)
    if why:
        count("JobRefused", reason=why, kind=message.kind)
        logger.warning(
            "job message dropped: the repository is not allowed to use these runners",
            extra={"reason": why, "kind": message.kind},
        )
    return why


def group_problem(group: RunnerGroup | None, *, allow_public_repos: bool = False) -> str | None:
    """What makes a runner group unsafe as the boundary of our runners, or None when it is safe.

    A group open to public repositories is accepted only when ALLOW_PUBLIC_REPOS says the operator
    chose to run strangers' code; it must be limited to selected repositories all the same.
    """
    if group is None:
        return "the runner group does not exist"
    problems = []
    if group.visibility != "selected":
        problems.append(
            f"visibility is {group.visibility!r}: it must be 'selected' (limited to selected "
            "repositories)"
        )
    if group.allows_public_repositories and not allow_public_repos:
        problems.append("it allows public repositories")
    return "; ".join(problems) or None


def runner_group_refusal(
    template: RunnerTemplate,
    message: JobMessage,
    github: Callable[[], GitHubClient],
    monotonic: Callable[[], float] = time.monotonic,
    *,
    allow_public_repos: bool = False,
) -> str | None:
    """Why this org-scope template's runner group may not take our runners, or None.

    Raises the GitHub client's errors when GitHub cannot be asked (nothing is cached then).
    Repository-scope templates need no group: their runners take only that repository's jobs.
    """
    return group_refusal(
        template,
        message.owner,
        message.installation_id,
        github,
        monotonic,
        allow_public_repos=allow_public_repos,
    )


def group_refusal(
    template: RunnerTemplate,
    owner: str,
    installation_id: int | None,
    github: Callable[[], GitHubClient],
    monotonic: Callable[[], float] = time.monotonic,
    *,
    allow_public_repos: bool = False,
) -> str | None:
    """runner_group_refusal for an organization named outright (a warm pool's hot members are
    registered before any job names one)."""
    if template.scope != "org":
        return None
    key = (owner.casefold(), template.runner_group_id)
    now = monotonic()
    verdict = _verdicts.get(key)
    if verdict is None or (
        verdict.problem is not None and now - verdict.checked_at >= UNSAFE_RECHECK_S
    ):
        group = github().get_runner_group(owner, template.runner_group_id, installation_id)
        verdict = _Verdict(group_problem(group, allow_public_repos=allow_public_repos), now)
        _verdicts[key] = verdict
    if verdict.problem:
        count("RunnerGroupUnsafe", template=template.name)
        logger.error(
            "launch refused: the template's runner group is not a safe boundary",
            extra={
                "template": template.name,
                "org": owner,
                "runner_group_id": template.runner_group_id,
                "problem": verdict.problem,
            },
        )
    return verdict.problem
