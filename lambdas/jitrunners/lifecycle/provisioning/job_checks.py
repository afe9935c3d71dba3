"""GitHub's status of the jobs a batch's launches ask about: one listing per workflow run.

A burst is mostly jobs of a few workflow runs (a matrix, a monorepo's many jobs), and a batch's
launches that need their "still queued?" check (those not fresh, launch.FRESH_LAUNCH) are often
of one run. `GET .../actions/runs/{id}/jobs` answers up to 100 of them in one call where
`GET .../actions/jobs/{id}` answers one: two or more launches of a run in the batch are checked
with the run's listing, a lone one with its job. A job the listing does not name (GitHub gives a
re-run's jobs new ids; a run of more jobs than the listing pages asked for) is read on its own,
so the answers are `get_job`'s, at the cost of at most one call more than asking each job (the
listing's first page, when it names none of them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from jitrunners.models import JobMessage
from jitrunners.observability import count

if TYPE_CHECKING:
    from jitrunners.github.client import JobStatus

PAGE = 100  # jobs a listing page holds (the client asks for per_page=100)

_Run = tuple[str, int, int | None]  # repo, run id, installation


def _run(message: JobMessage) -> _Run:
    return message.repo, message.run_id, message.installation_id


class JobChecks:
    """`get(message)`: GitHub's status of the message's job (None: gone), as
    `GitHubClient.get_job` answers it, raising what it raises. `candidates`: the launches of the
    batch that may be checked; a run with two or more of them is listed on its first check."""

    def __init__(self, github: Callable[[], Any], candidates: Iterable[JobMessage]) -> None:
        self._github = github
        self._wanted: dict[_Run, set[int]] = {}
        for message in candidates:
            self._wanted.setdefault(_run(message), set()).add(message.job_id)
        self._listed: set[_Run] = set()
        self._known: dict[tuple[str, int], JobStatus] = {}

    def get(self, message: JobMessage) -> JobStatus | None:
        key = (message.repo, message.job_id)
        run = _run(message)
        if key not in self._known and run not in self._listed:
            wanted = self._wanted.get(run, set())
            if len(wanted) >= 2 and message.job_id in wanted:
                self._listed.add(run)
                self._list(run, wanted)
        found = self._known.get(key)
        if found is not None:
            count("JobCheckListed")
            return found
        return self._github().get_job(message.repo, message.job_id, message.installation_id)

    def _list(self, run: _Run, wanted: set[int]) -> None:
        """The run's jobs until every wanted one is seen, or until another page could cost more
        than asking those not seen yet on their own (they are then asked on their own): at most
        one call more than asking each wanted job, that one when the first page names none."""
        from jitrunners.github.client import GitHubNotFound

        repo, run_id, installation = run
        missing = set(wanted)
        seen = 0
        try:
            for status in self._github().run_job_statuses(repo, run_id, installation):
                seen += 1
                if status.id in missing:
                    missing.discard(status.id)
                    self._known[(repo, status.id)] = status
                if not missing:
                    break
                # After a whole page the next item is the next page's: one call more, worth it
                # only while the pages read, it, and the jobs still missing stay within asking
                # each wanted job.
                if seen % PAGE == 0 and seen // PAGE + 1 + len(missing) > len(wanted):
                    break
        except GitHubNotFound:
            return  # the run is gone: its jobs are asked on their own (each answers None)
