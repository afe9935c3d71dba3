"""The runner group as the boundary: asked once per process when safe, again soon when not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jitrunners.config import parse_templates
from jitrunners.github.client import RunnerGroup
from jitrunners.lifecycle.provisioning import boundary
from jitrunners.models import JobMessage, WorkflowJob
from tests.conftest import TEMPLATES
from tests.support.webhooks import workflow_job_payload

ORG_TEMPLATE = parse_templates(TEMPLATES)[0]
MESSAGE = JobMessage.launch_for(
    WorkflowJob.from_payload(workflow_job_payload()), ORG_TEMPLATE.name, "dlv-1"
)


class Groups:
    def __init__(self, group: RunnerGroup | None) -> None:
        self.group = group
        self.asked = 0

    def get_runner_group(self, org: str, group_id: int, installation_id: int | None) -> object:
        self.asked += 1
        return self.group


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    boundary.reset()
    yield
    boundary.reset()


def test_safe_group_is_asked_about_once_per_process() -> None:
    github = Groups(RunnerGroup(1, "ci", "selected", allows_public_repositories=False))
    now = [0.0]
    for step in (0.0, 10.0, 86_400.0):
        now[0] = step
        assert (
            boundary.runner_group_refusal(ORG_TEMPLATE, MESSAGE, lambda: github, lambda: now[0])
            is None
        )  # type: ignore[arg-type,return-value]
    assert github.asked == 1


def test_unsafe_group_is_asked_again_after_five_minutes_so_a_fix_is_seen() -> None:
    github = Groups(RunnerGroup(1, "Default", "all", allows_public_repositories=True))
    now = [0.0]

    def refusal() -> str | None:
        return boundary.runner_group_refusal(ORG_TEMPLATE, MESSAGE, lambda: github, lambda: now[0])  # type: ignore[arg-type,return-value]

    assert "visibility is 'all'" in (refusal() or "")
    assert "allows public repositories" in (refusal() or "")
    assert github.asked == 1
    github.group = RunnerGroup(1, "Default", "selected", allows_public_repositories=False)
    now[0] = boundary.UNSAFE_RECHECK_S
    assert refusal() is None
    assert github.asked == 2


def test_a_group_open_to_public_repositories_needs_the_operators_explicit_opt_in() -> None:
    open_group = RunnerGroup(1, "oss", "selected", allows_public_repositories=True)
    assert boundary.group_problem(open_group) == "it allows public repositories"
    assert boundary.group_problem(open_group, allow_public_repos=True) is None
    everyone = RunnerGroup(1, "Default", "all", allows_public_repositories=True)
    assert "must be 'selected'" in (boundary.group_problem(everyone, allow_public_repos=True) or "")
