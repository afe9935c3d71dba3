"""Label matching and the repository allowlist."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jitrunners.config import Settings, parse_templates
from jitrunners.models import WorkflowJob
from jitrunners.routing import match_template, refusal
from tests.conftest import TEMPLATES
from tests.support.webhooks import workflow_job_payload

TPLS = parse_templates(TEMPLATES)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["self-hosted", "linux-x64"], "linux-x64"),
        (["SELF-HOSTED", "Linux", "X64"], "linux-x64"),
        (["self-hosted"], "linux-x64"),  # first template that contains all labels wins
        (["linux-arm64"], "linux-arm64"),
        (["self-hosted", "linux", "arm64"], "linux-arm64"),
        (["self-hosted", "x64", "arm64"], None),
        (["ubuntu-latest"], None),
        ([], None),
    ],
)
def test_first_template_containing_all_job_labels(labels: list[str], expected: str | None) -> None:
    found = match_template(labels, TPLS)
    assert (found.name if found else None) == expected


JOB = WorkflowJob.from_payload(workflow_job_payload(repo="acme/widgets", private=True))


@pytest.mark.parametrize(
    ("settings", "job", "reason"),
    [
        (Settings(), JOB, None),
        (Settings(allowed_owners=("acme",)), JOB, None),
        (Settings(allowed_owners=("other",)), JOB, "owner_not_allowed"),
        (Settings(allowed_repos=("acme/widgets",)), JOB, None),
        (Settings(allowed_repos=("acme/gadgets",)), JOB, "repo_not_allowed"),
        (
            Settings(allowed_owners=("acme",), allowed_repos=("acme/gadgets",)),
            JOB,
            "repo_not_allowed",
        ),
        (Settings(), replace(JOB, private=False), "public_repo"),
        (Settings(allow_public_repos=True), replace(JOB, private=False), None),
        (Settings(allowed_owners=("acme",)), replace(JOB, owner="ACME"), None),
    ],
)
def test_refusal(settings: Settings, job: WorkflowJob, reason: str | None) -> None:
    assert refusal(job, settings) == reason
