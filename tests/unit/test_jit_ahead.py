"""JIT configs ahead of boot (lifecycle/provisioning/jit.py): what a launch leaves to the start."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from jitrunners.github.client import GitHubError, GitHubRateLimited
from jitrunners.lifecycle.provisioning import jit
from jitrunners.models import JobMessage, WorkflowJob
from tests.support.webhooks import workflow_job_payload

TEMPLATE = SimpleNamespace(
    scope="org", labels=("self-hosted",), sizing=None, runner_group_id=1, name="linux-x64"
)


def _launched(n: int) -> list[tuple[JobMessage, str]]:
    out = []
    for i in range(n):
        job = WorkflowJob.from_payload(workflow_job_payload(job_id=100 + i))
        out.append((JobMessage.launch_for(job, "linux-x64", f"dlv-{i}"), f"i-{i:017x}"))
    return out


def _deps() -> Any:
    client = SimpleNamespace(once=lambda: "single-attempt-client")
    return SimpleNamespace(github=lambda: client)


@pytest.mark.parametrize(
    ("fails_at", "error", "stored"),
    [
        (None, None, 5),
        # GitHub's budget is spent: nothing more is asked in this batch (the starts ask later).
        (2, GitHubRateLimited("held back", 30.0, status=None), 2),
        # Any other failure leaves that one runner to its start; the others go on.
        (2, GitHubError("502", status=502, retryable=True), 4),
    ],
)
def test_ahead_of_boot_stores_what_github_takes_now(
    monkeypatch: pytest.MonkeyPatch, fails_at: int | None, error: Exception | None, stored: int
) -> None:
    asked: list[str] = []

    def store(github: Any, _deps: Any, instance_id: str, *_rest: Any) -> None:
        assert github == "single-attempt-client"  # never the retrying, waiting client
        asked.append(instance_id)
        if fails_at is not None and len(asked) == fails_at + 1:
            raise error  # type: ignore[misc]

    monkeypatch.setattr(jit, "_store", store)
    launched = _launched(5)
    result = jit.ahead_of_boot(launched, TEMPLATE, _deps())  # type: ignore[arg-type]
    assert len(result) == stored
    if isinstance(error, GitHubRateLimited):
        assert len(asked) == fails_at + 1  # type: ignore[operator]
        assert result == {i for _, i in launched[:2]}
