"""A batch's job checks: one listing per workflow run with several launches in the batch, the
answers `get_job` would give, and never more than one call beyond asking each job."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from jitrunners.github.client import GitHubNotFound, GitHubRateLimited, JobStatus
from jitrunners.lifecycle.provisioning.job_checks import PAGE, JobChecks
from jitrunners.models import JobMessage, WorkflowJob
from tests.support.webhooks import workflow_job_payload


def _message(job_id: int, run_id: int = 7, repo: str = "acme/widgets") -> JobMessage:
    payload = workflow_job_payload(job_id=job_id, run_id=run_id)
    message = JobMessage.launch_for(WorkflowJob.from_payload(payload), "linux-x64", f"d-{job_id}")
    return replace(message, repo=repo)


class FakeGitHub:
    """A run's jobs in listing order; counts calls as GitHub would (a page per 100 jobs)."""

    def __init__(self, runs: dict[int, list[JobStatus]], *, listing_error: Exception | None = None):
        self.runs = runs
        self.listing_error = listing_error
        self.job_calls: list[int] = []
        self.pages = 0

    def run_job_statuses(
        self, repo: str, run_id: int, installation_id: int | None
    ) -> Iterator[JobStatus]:
        for index, job in enumerate(self.runs.get(run_id, [])):
            if index % PAGE == 0:
                self.pages += 1
                if self.listing_error is not None:
                    raise self.listing_error
            yield job
        if not self.runs.get(run_id):
            self.pages += 1
            if self.listing_error is not None:
                raise self.listing_error

    def get_job(self, repo: str, job_id: int, installation_id: int | None) -> JobStatus | None:
        self.job_calls.append(job_id)
        return next((j for jobs in self.runs.values() for j in jobs if j.id == job_id), None)


def _job(job_id: int, status: str = "queued", runner: str | None = None) -> JobStatus:
    return JobStatus(id=job_id, status=status, conclusion=None, runner_name=runner)


def test_launches_of_one_run_are_answered_by_one_listing_and_a_lone_one_by_its_job() -> None:
    github = FakeGitHub(
        {7: [_job(1), _job(2, "in_progress", "i-0abc"), _job(3)], 8: [_job(9, "completed")]}
    )
    batch = [_message(1), _message(2), _message(3), _message(9, run_id=8)]
    checks = JobChecks(lambda: github, batch)

    answers = [checks.get(m) for m in batch]

    assert answers == [_job(1), _job(2, "in_progress", "i-0abc"), _job(3), _job(9, "completed")]
    assert github.pages == 1  # run 7, once for its three launches
    assert github.job_calls == [9]  # run 8 has one launch in the batch: its job is asked


def test_a_job_the_listing_does_not_name_is_asked_on_its_own() -> None:
    # GitHub gives a re-run's jobs new ids: the launch's job is then not in the latest listing.
    github = FakeGitHub({7: [_job(1), _job(5)]})
    batch = [_message(1), _message(2)]
    checks = JobChecks(lambda: github, batch)

    assert checks.get(_message(2)) is None  # get_job's answer: not found
    assert checks.get(_message(1)) == _job(1)
    assert github.pages == 1
    assert github.job_calls == [2]


@pytest.mark.parametrize(
    ("wanted", "found_pages", "max_calls"),
    [
        ([5, 240], 1, 2),  # page 1 finds one: a page more would cost as much as asking the other
        ([5, 50, 150, 160], 2, 2),  # a page more while it cannot cost more than asking
        ([150, 160], 1, 3),  # page 1 finds none: the one call more than asking each
    ],
)
def test_paging_stops_before_it_costs_more_than_asking_each_job(
    wanted: list[int], found_pages: int, max_calls: int
) -> None:
    github = FakeGitHub({7: [_job(i) for i in range(300)]})
    batch = [_message(i) for i in wanted]
    checks = JobChecks(lambda: github, batch)

    assert [checks.get(m) for m in batch] == [_job(i) for i in wanted]

    assert github.pages == found_pages
    assert github.pages + len(github.job_calls) <= max_calls
    assert github.pages + len(github.job_calls) <= len(wanted) + 1


def test_a_run_gone_leaves_each_job_to_its_own_check() -> None:
    github = FakeGitHub({7: [_job(1)]}, listing_error=GitHubNotFound("gone"))
    checks = JobChecks(lambda: github, [_message(1), _message(2)])

    assert checks.get(_message(1)) == _job(1)
    assert checks.get(_message(2)) is None
    assert github.job_calls == [1, 2]


def test_a_rate_limited_listing_raises_as_get_job_would_and_is_not_asked_again() -> None:
    limited = GitHubRateLimited("points", 30.0)
    github = FakeGitHub({7: [_job(1), _job(2)]}, listing_error=limited)
    checks = JobChecks(lambda: github, [_message(1), _message(2)])

    with pytest.raises(GitHubRateLimited):
        checks.get(_message(1))
    assert checks.get(_message(2)) == _job(2)  # asked on its own, not listed again
    assert github.pages == 1
    assert github.job_calls == [2]


def test_the_same_job_id_in_two_repositories_is_two_jobs() -> None:
    github = FakeGitHub({7: [_job(1), _job(2)]})
    checks = JobChecks(lambda: github, [_message(1), _message(2), _message(1, repo="acme/other")])
    checks.get(_message(1))
    checks.get(_message(1, repo="acme/other"))  # one launch of its run in this batch
    assert github.job_calls == [1]
