"""GitHub REST client: one session, timeouts, bounded retries, rate limits, typed results."""

from __future__ import annotations

import functools
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from jitrunners.github.auth import AppAuth, Auth, LazyAppAuth, TokenAuth
from jitrunners.github.shaping import POINTS_PER_MINUTE, REGISTRATION, Shaper

if TYPE_CHECKING:
    import requests

    from jitrunners.config import Settings

API_VERSION = "2022-11-28"
TIMEOUT_S = (3.05, 10.0)  # (connect, read): a Lambda must never hang on GitHub
MAX_ATTEMPTS = 3
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 4.0
# Waiting longer than this inside a Lambda wastes paid time and holds the batch: callers get
# GitHubRateLimited and put the message back with a visibility timeout instead.
MAX_INLINE_WAIT_S = 5.0
SECONDARY_LIMIT_WAIT_S = 60.0
TOKEN_LIFETIME_S = 3600.0  # an installation token's lifetime, as GitHub documents it
# A further App not installed on an account is asked again after this long.
NOT_INSTALLED_TTL_S = 600.0
INSTALLED_TTL_S = 86400.0  # installation ids change only when an App is reinstalled


class GitHubError(RuntimeError):
    """A GitHub call failed. `retryable` says whether trying again later may succeed."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class GitHubNotFound(GitHubError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status=404, retryable=False)


class GitHubAuthError(GitHubError):
    def __init__(self, message: str, *, status: int | None = 401) -> None:
        super().__init__(message, status=status, retryable=False)


class GitHubRateLimited(GitHubError):
    def __init__(self, message: str, retry_after_s: float, *, status: int | None = 429) -> None:
        super().__init__(message, status=status, retryable=True)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class RunnerScope:
    kind: str  # "org" | "repo"
    owner: str
    repo: str = ""  # "owner/name" for repo scope

    @property
    def path(self) -> str:
        return f"orgs/{self.owner}" if self.kind == "org" else f"repos/{self.repo}"


@dataclass(frozen=True, slots=True)
class Runner:
    id: int
    name: str
    status: str
    busy: bool
    labels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RunnerGroup:
    """An organization's runner group: which repositories its runners may take jobs from."""

    id: int
    name: str
    visibility: str  # "selected" | "all" | "private"
    allows_public_repositories: bool


@dataclass(frozen=True, slots=True)
class JobStatus:
    id: int
    status: str
    conclusion: str | None
    runner_name: str | None
    # The attempt GitHub has of the job now (a re-run keeps the job id, `run_attempt` + 1).
    run_attempt: int = 1


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    """A workflow run as `GET /repos/{repo}/actions/runs` lists it (its latest attempt)."""

    id: int
    repo: str  # "owner/name" as GitHub spells it
    status: str
    run_attempt: int
    # Read as the webhook reads a payload: "internal" is private, a missing flag is public.
    private: bool
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class RunJob:
    """A job of a workflow run (latest execution), as `.../runs/{id}/jobs` lists it."""

    id: int
    run_id: int
    run_attempt: int
    status: str  # queued, in_progress, completed, waiting, requested, pending
    labels: tuple[str, ...]
    runner_name: str | None
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class JitConfig:
    runner_id: int
    encoded: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    guid: str
    event: str
    action: str | None
    status_code: int
    delivered_at: datetime
    redelivery: bool


@dataclass(frozen=True, slots=True)
class Installation:
    id: int
    # A user's or organization's login, an enterprise's slug; "" when GitHub names no account
    # (the description lets `account` be null).
    account: str


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _maybe_time(value: Any) -> datetime | None:
    try:
        return _parse_time(str(value)) if value else None
    except ValueError:
        return None


def _workflow_run(data: dict[str, Any], repo: str) -> WorkflowRun:
    repository = data.get("repository") or {}
    return WorkflowRun(
        id=int(data["id"]),
        repo=str(repository.get("full_name") or repo),
        status=str(data.get("status", "")),
        run_attempt=int(data.get("run_attempt") or 1),
        private=bool(repository.get("private", False)) and repository.get("visibility") != "public",
        created_at=_maybe_time(data.get("created_at")),
    )


def _job_status(data: dict[str, Any]) -> JobStatus:
    return JobStatus(
        id=int(data["id"]),
        status=str(data.get("status", "")),
        conclusion=data.get("conclusion"),
        runner_name=data.get("runner_name"),
        run_attempt=int(data.get("run_attempt") or 1),
    )


def _run_job(data: dict[str, Any]) -> RunJob:
    return RunJob(
        id=int(data["id"]),
        run_id=int(data["run_id"]),
        run_attempt=int(data.get("run_attempt") or 1),
        status=str(data.get("status", "")),
        labels=tuple(str(label) for label in data.get("labels") or ()),
        runner_name=data.get("runner_name") or None,
        created_at=_maybe_time(data.get("created_at")),
    )


def _account_name(account: Any) -> str:
    if not isinstance(account, dict):
        return ""
    return str(account.get("login") or account.get("slug") or "")


def _runner(data: dict[str, Any]) -> Runner:
    return Runner(
        id=int(data["id"]),
        name=str(data.get("name", "")),
        status=str(data.get("status", "")),
        busy=bool(data.get("busy", False)),
        labels=tuple(str(lbl.get("name", "")) for lbl in data.get("labels", [])),
    )


class GitHubClient:
    """The REST calls jitrunners makes (docs/contracts.md "GitHub adapter")."""

    def __init__(
        self,
        auth: Auth,
        base_url: str = "https://api.github.com",
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        max_inline_wait_s: float = MAX_INLINE_WAIT_S,
        extra_apps: tuple[LazyAppAuth, ...] = (),
        shaper: Shaper | None = None,
    ) -> None:
        import requests

        self.auth = auth
        # Further GitHub Apps that generate JIT configs too (App mode only): one per job.
        self.extra_apps = extra_apps if isinstance(auth, AppAuth) else ()
        # What this process knows of GitHub's limits, per budget: calls GitHub would refuse
        # are held back (GitHubRateLimited) instead of sent.
        self.shaper = shaper or Shaper(POINTS_PER_MINUTE, clock)
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers.update(
            {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}
        )
        self._sleep = sleep
        self._clock = clock
        self._max_wait = max_inline_wait_s
        self._attempts = MAX_ATTEMPTS
        # HTTP calls by "METHOD /path/{template}", for the benchmarks.
        self.calls: Counter[str] = Counter()

    def without_waiting(self) -> GitHubClient:
        """This client (same credentials, token cache, connections and call counts) raising
        GitHubRateLimited at once instead of sleeping through a rate limit: for batch work,
        where one record's wait would hold every other record of the batch."""
        import copy

        impatient = copy.copy(self)
        impatient._max_wait = 0.0
        return impatient

    def once(self) -> GitHubClient:
        """This client, as `without_waiting`, making one attempt per call (no back-off after a
        5xx or a connection error): for work that another step does anyway if this one fails."""
        single = self.without_waiting()
        single._attempts = 1
        return single

    # --- authentication -------------------------------------------------------------------
    def _token_for(self, installation_id: int | None, auth: Auth | None = None) -> str:
        auth = auth or self.auth
        if isinstance(auth, TokenAuth):
            return auth.token
        if installation_id is None:
            raise GitHubAuthError("GitHub App mode needs an installation id", status=None)
        cached = auth.cached_token(installation_id)
        if cached:
            return cached
        response = self._send(
            "POST",
            "/app/installations/{id}/access_tokens",
            f"/app/installations/{installation_id}/access_tokens",
            bearer=auth.app_jwt(),
            budget=f"app {auth.app_id}",
        )
        body = response.json()
        # The description types expires_at as a bare string: one that is not a time is read as
        # the documented one-hour lifetime.
        expiry = _maybe_time(body.get("expires_at"))
        expires_at = expiry.timestamp() if expiry else self._clock() + TOKEN_LIFETIME_S
        auth.store_token(installation_id, body["token"], expires_at)
        return str(body["token"])

    @staticmethod
    def _budget(auth: Auth, installation_id: int | None, app: bool) -> str:
        """Whose rate limits a call spends: an installation's, an App's (JWT) or the token's."""
        if isinstance(auth, TokenAuth):
            return "token"
        return f"app {auth.app_id}" if app else f"installation {installation_id}"

    @staticmethod
    def _app_jwt(auth: Auth) -> str:
        if not isinstance(auth, AppAuth):
            raise GitHubAuthError("this call needs GitHub App credentials", status=None)
        return auth.app_jwt()

    # --- transport ------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        template: str,
        path: str,
        *,
        installation_id: int | None = None,
        app: bool = False,
        auth: Auth | None = None,
        resource: str = "core",
        **kwargs: Any,
    ) -> requests.Response:
        auth = auth or self.auth
        bearer = self._app_jwt(auth) if app else self._token_for(installation_id, auth)
        budget = self._budget(auth, installation_id, app)
        try:
            return self._send(
                method, template, path, bearer=bearer, budget=budget, resource=resource, **kwargs
            )
        except GitHubAuthError:
            # A revoked or expired cached token: mint a fresh one once, then give up.
            if app or not isinstance(auth, AppAuth) or installation_id is None:
                raise
            auth.forget_token(installation_id)
            bearer = self._token_for(installation_id, auth)
            return self._send(
                method, template, path, bearer=bearer, budget=budget, resource=resource, **kwargs
            )

    def _hold(self, method: str, template: str, budget: str, resource: str) -> None:
        """Hold the call back while this process knows GitHub would refuse it: raise
        GitHubRateLimited when the wait is longer than this client may sleep (the caller's
        message waits in its queue instead), else sleep it and go."""
        wait = self.shaper.admit(budget, method, resource)
        if wait <= 0:
            return
        if wait > self._max_wait:
            raise GitHubRateLimited(
                f"{method} {template}: held back {wait:.0f}s (rate limit)", wait, status=None
            )
        self._sleep(wait)
        self.shaper.spend(budget, method)

    def _send(
        self,
        method: str,
        template: str,
        path: str,
        *,
        bearer: str,
        budget: str = "",
        resource: str = "core",
        **kwargs: Any,
    ) -> requests.Response:
        import requests

        url = path if path.startswith("http") else f"{self.base_url}{path}"
        headers = {"Authorization": f"Bearer {bearer}"}
        budget = budget or self._budget(self.auth, None, True)
        slept = False  # through GitHub's own wait: the retry goes (the local stack scales sleeps)
        for attempt in range(1, self._attempts + 1):
            if slept:
                self.shaper.spend(budget, method)
            else:
                self._hold(method, template, budget, resource)
            slept = False
            self.calls[f"{method} {template}"] += 1
            try:
                response = self.session.request(
                    method, url, headers=headers, timeout=TIMEOUT_S, **kwargs
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == self._attempts:
                    raise GitHubError(
                        f"{method} {template}: {type(exc).__name__}", retryable=True
                    ) from None
                self._sleep(self._backoff(attempt))
                continue
            status = response.status_code
            wait = self._rate_limit_wait(response) if status >= 400 else None
            self.shaper.observe(budget, status, response.headers, wait)
            if status < 400:
                return response
            if wait is not None:
                if wait > self._max_wait or attempt == self._attempts:
                    raise GitHubRateLimited(
                        f"{method} {template}: rate limited for {wait:.0f}s", wait, status=status
                    )
                self._sleep(wait)
                slept = True
                continue
            if status >= 500:
                if attempt == self._attempts:
                    raise GitHubError(
                        f"{method} {template}: {status}", status=status, retryable=True
                    )
                self._sleep(self._backoff(attempt))
                continue
            if status == 404:
                raise GitHubNotFound(f"{method} {template}: not found")
            if status == 401:
                raise GitHubAuthError(f"{method} {template}: bad credentials")
            # 403 without rate-limit signals (missing permission), 422 and friends: our fault.
            raise GitHubError(f"{method} {template}: {status}", status=status, retryable=False)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _backoff(attempt: int) -> float:
        return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))

    def _rate_limit_wait(self, response: requests.Response) -> float | None:
        """Seconds GitHub asks us to wait, or None when the response is not a rate limit."""
        if response.status_code not in (403, 429):
            return None
        headers = response.headers
        retry_after = headers.get("retry-after")
        if retry_after:
            try:
                return max(0.0, float(retry_after))
            except ValueError:
                return SECONDARY_LIMIT_WAIT_S
        if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
            try:
                return max(0.0, float(headers["x-ratelimit-reset"]) - self._clock())
            except ValueError:
                return SECONDARY_LIMIT_WAIT_S
        # GitHub's documented fallback for a secondary limit without headers: wait a minute.
        if response.status_code == 429 or "rate limit" in response.text.lower():
            return SECONDARY_LIMIT_WAIT_S
        return None

    def _pages(
        self, template: str, path: str, key: str | None, **kwargs: Any
    ) -> Iterator[dict[str, Any]]:
        """Items of a paginated list, following the Link header (page or cursor based)."""
        url: str | None = path
        params: dict[str, Any] | None = {"per_page": 100, **kwargs.pop("params", {})}
        while url:
            response = self._call("GET", template, url, params=params, **kwargs)
            body = response.json()
            yield from body[key] if key else body
            url = response.links.get("next", {}).get("url")
            params = None  # the next link carries the query

    # --- calls ----------------------------------------------------------------------------
    def get_job(self, repo: str, job_id: int, installation_id: int | None) -> JobStatus | None:
        """With further Apps configured, the job's App reads it (the one that generates its
        runners' JIT configs, app_for_job): job checks spend every App's points, not only the
        primary's. A further App refused (not installed, no permission) leaves it to the
        primary App."""
        scope = RunnerScope("repo", repo.partition("/")[0], repo)
        auth, installation = self._spread(scope, str(job_id), installation_id, "GET", "core")
        try:
            response = self._get_job(repo, job_id, auth, installation)
        except GitHubNotFound:
            return None
        except GitHubError as exc:
            self._further_app_refused(auth, exc, scope, "job")
            try:
                response = self._get_job(repo, job_id, self.auth, installation_id)
            except GitHubNotFound:
                return None
        return _job_status(response.json())

    def _further_app_refused(
        self, auth: Auth, exc: GitHubError, scope: RunnerScope, what: str
    ) -> None:
        """A read a further App was refused (401, or 403 without rate-limit signals: not
        installed there, no Actions permission) is warned of and left to the caller to ask the
        primary App; any other failure, or the primary App's own, is raised."""
        if auth is self.auth or not (isinstance(exc, GitHubAuthError) or exc.status == 403):
            raise exc
        assert isinstance(auth, AppAuth)
        _warn(f"further GitHub App refused: {what} read by the primary App", auth, scope)

    def _get_job(
        self, repo: str, job_id: int, auth: Auth, installation_id: int | None
    ) -> requests.Response:
        return self._call(
            "GET",
            "/repos/{repo}/actions/jobs/{id}",
            f"/repos/{repo}/actions/jobs/{job_id}",
            installation_id=installation_id,
            auth=auth,
        )

    def list_runs(
        self, repo: str, status: str, installation_id: int | None
    ) -> Iterator[WorkflowRun]:
        """The repository's workflow runs in one status, newest first (paginated; GitHub
        returns at most 1,000 runs for a status filter)."""
        for data in self._pages(
            "/repos/{repo}/actions/runs",
            f"/repos/{repo}/actions/runs",
            "workflow_runs",
            installation_id=installation_id,
            # The pull requests of each run are the bulk of the answer and of no use to us.
            params={"status": status, "exclude_pull_requests": "true"},
        ):
            yield _workflow_run(data, repo)

    def list_run_jobs(
        self, repo: str, run_id: int, installation_id: int | None
    ) -> Iterator[RunJob]:
        """The latest execution of each job of a run (paginated), read by the run's App as
        `run_job_statuses` reads it."""
        for data in self._run_listing(repo, run_id, installation_id):
            yield _run_job(data)

    def run_job_statuses(
        self, repo: str, run_id: int, installation_id: int | None
    ) -> Iterator[JobStatus]:
        """The latest execution of each job of a run, as `get_job` reads one (paginated: 100
        jobs a call). GitHubNotFound: the run is gone."""
        for data in self._run_listing(repo, run_id, installation_id):
            yield _job_status(data)

    def _run_listing(
        self, repo: str, run_id: int, installation_id: int | None
    ) -> Iterator[dict[str, Any]]:
        """`GET .../runs/{id}/jobs?filter=latest`, page by page. With further Apps configured the
        run's App reads it (app_for_job of the run id), as `get_job` spreads job reads: scale-up's
        job checks and the housekeeper's reconciliation spend every App's points, not only the
        primary's. A further App refused (401, or 403 without rate-limit signals) leaves it to
        the primary App."""
        scope = RunnerScope("repo", repo.partition("/")[0], repo)
        auth, installation = self._spread(scope, str(run_id), installation_id, "GET", "core")
        jobs = self._run_jobs(repo, run_id, auth, installation)
        try:
            first = next(jobs, None)
        except GitHubError as exc:
            self._further_app_refused(auth, exc, scope, "run's jobs")
            jobs = self._run_jobs(repo, run_id, self.auth, installation_id)
            first = next(jobs, None)
        if first is None:
            return
        yield first
        yield from jobs

    def _run_jobs(
        self, repo: str, run_id: int, auth: Auth, installation_id: int | None
    ) -> Iterator[dict[str, Any]]:
        return self._pages(
            "/repos/{repo}/actions/runs/{id}/jobs",
            f"/repos/{repo}/actions/runs/{run_id}/jobs",
            "jobs",
            installation_id=installation_id,
            auth=auth,
            params={"filter": "latest"},
        )

    def generate_jitconfig(
        self,
        scope: RunnerScope,
        name: str,
        labels: list[str] | tuple[str, ...],
        runner_group_id: int,
        installation_id: int | None,
    ) -> JitConfig:
        """With further Apps configured, the job's App generates it (app_for_runner): each App
        has its own installation, so its own points per minute and hourly budgets."""
        body = {"name": name, "runner_group_id": runner_group_id, "labels": list(labels)}
        auth, installation = self._spread(
            scope, _job_key(name), installation_id, "POST", REGISTRATION
        )
        try:
            response = self._generate(scope, body, auth, installation)
        except (GitHubNotFound, GitHubAuthError):
            if auth is self.auth:
                raise
            # That App lost its installation or its key was revoked: the primary App does it.
            assert isinstance(auth, AppAuth)
            auth.forget_installation(scope.path)
            _warn("further GitHub App refused: JIT config from the primary App", auth, scope)
            response = self._generate(scope, body, self.auth, installation_id)
        body = response.json()
        return JitConfig(
            runner_id=int(body["runner"]["id"]), encoded=str(body["encoded_jit_config"])
        )

    def _generate(
        self, scope: RunnerScope, body: dict[str, Any], auth: Auth, installation_id: int | None
    ) -> requests.Response:
        return self._call(
            "POST",
            "/{scope}/actions/runners/generate-jitconfig",
            f"/{scope.path}/actions/runners/generate-jitconfig",
            installation_id=installation_id,
            auth=auth,
            resource=REGISTRATION,
            json=body,
        )

    def _spread(
        self,
        scope: RunnerScope,
        key: str,
        installation_id: int | None,
        method: str,
        resource: str,
    ) -> tuple[Auth, int | None]:
        """The App (and its installation on the scope's account) for a job's call: the job's
        own (`key`: its id, app_for_job), or the next App in order that this process does not
        already know to be out of budget; the primary App when no further App is usable."""
        if not self.extra_apps:
            return self.auth, installation_id
        count = 1 + len(self.extra_apps)
        first: tuple[Auth, int | None] | None = None
        for offset in range(count):
            index = (app_for_job(key, count) + offset) % count
            choice = (
                (self.auth, installation_id)
                if index == 0
                else self._installed(self.extra_apps[index - 1], scope)
            )
            if choice is None:
                continue
            budget = self._budget(choice[0], choice[1], False)
            if self.shaper.would_admit(budget, method, resource):
                return choice
            first = first or choice
        return first or (self.auth, installation_id)

    def _installed(self, app: LazyAppAuth, scope: RunnerScope) -> tuple[AppAuth, int] | None:
        """A further App and its installation on the scope's account (looked up with its JWT,
        cached), or None when its key is unusable or it is not installed there."""
        auth = app.get()
        if auth is None:
            return None  # its key is unusable (logged when read)
        known, installation = auth.cached_installation(scope.path)
        if not known:
            template = (
                "/orgs/{org}/installation" if scope.kind == "org" else "/repos/{repo}/installation"
            )
            try:
                response = self._call(
                    "GET", template, f"/{scope.path}/installation", app=True, auth=auth
                )
            except GitHubNotFound:
                installation = None
                _warn("further GitHub App not installed here: not used", auth, scope)
                auth.store_installation(scope.path, None, NOT_INSTALLED_TTL_S)
            except GitHubError:
                return None  # rate limited or unavailable: the next App, and ask again later
            else:
                installation = int(response.json()["id"])
                auth.store_installation(scope.path, installation, INSTALLED_TTL_S)
        return None if installation is None else (auth, installation)

    def get_runner_group(
        self, org: str, group_id: int, installation_id: int | None
    ) -> RunnerGroup | None:
        """The organization's runner group, or None when it does not exist (404)."""
        try:
            response = self._call(
                "GET",
                "/orgs/{org}/actions/runner-groups/{id}",
                f"/orgs/{org}/actions/runner-groups/{group_id}",
                installation_id=installation_id,
            )
        except GitHubNotFound:
            return None
        body = response.json()
        return RunnerGroup(
            id=int(body["id"]),
            name=str(body.get("name", "")),
            visibility=str(body.get("visibility", "")),
            # Absent means GitHub did not say: assume the unsafe answer.
            allows_public_repositories=bool(body.get("allows_public_repositories", True)),
        )

    def find_runner(
        self, scope: RunnerScope, name: str, installation_id: int | None
    ) -> Runner | None:
        response = self._call(
            "GET",
            "/{scope}/actions/runners",
            f"/{scope.path}/actions/runners",
            installation_id=installation_id,
            params={"name": name},
        )
        for data in response.json().get("runners", []):
            if data.get("name") == name:
                return _runner(data)
        return None

    def list_runners(self, scope: RunnerScope, installation_id: int | None) -> Iterator[Runner]:
        for data in self._pages(
            "/{scope}/actions/runners",
            f"/{scope.path}/actions/runners",
            "runners",
            installation_id=installation_id,
        ):
            yield _runner(data)

    def delete_runner(
        self, scope: RunnerScope, runner_id: int, installation_id: int | None
    ) -> bool:
        try:
            self._call(
                "DELETE",
                "/{scope}/actions/runners/{id}",
                f"/{scope.path}/actions/runners/{runner_id}",
                installation_id=installation_id,
            )
        except GitHubNotFound:
            return False
        return True

    def rerun_job(self, repo: str, job_id: int, installation_id: int | None) -> None:
        self._call(
            "POST",
            "/repos/{repo}/actions/jobs/{id}/rerun",
            f"/repos/{repo}/actions/jobs/{job_id}/rerun",
            installation_id=installation_id,
        )

    def list_deliveries(self, since: datetime | None = None) -> Iterator[Delivery]:
        """Webhook deliveries of the App, newest first, down to `since` (cursor pagination)."""
        for data in self._pages("/app/hook/deliveries", "/app/hook/deliveries", None, app=True):
            delivered_at = _parse_time(str(data["delivered_at"]))
            if since is not None and delivered_at < since:
                return
            yield Delivery(
                id=int(data["id"]),
                guid=str(data.get("guid", "")),
                event=str(data.get("event", "")),
                action=data.get("action"),
                status_code=int(data.get("status_code") or 0),
                delivered_at=delivered_at,
                redelivery=bool(data.get("redelivery", False)),
            )

    def redeliver(self, delivery_id: int) -> None:
        self._call(
            "POST",
            "/app/hook/deliveries/{id}/attempts",
            f"/app/hook/deliveries/{delivery_id}/attempts",
            app=True,
        )

    def list_installations(self) -> Iterator[Installation]:
        for data in self._pages("/app/installations", "/app/installations", None, app=True):
            yield Installation(id=int(data["id"]), account=_account_name(data.get("account")))


def app_for_job(key: str, apps: int) -> int:
    """Which of `apps` Apps (0: the primary) makes a job's calls: its runners' JIT configs and
    its job checks, chosen by the job id, so that every start of one job asks the same App."""
    return zlib.crc32(key.encode()) % max(1, apps)


def _job_key(runner_name: str) -> str:
    """The job a runner was launched for (its name says, models.runner_name); the name itself
    for a runner launched for no job (a pool's)."""
    from jitrunners.models import runner_launched_for

    launched = runner_launched_for(runner_name)
    return str(launched[0]) if launched else runner_name


def app_for_runner(name: str, apps: int) -> int:
    """Which of `apps` Apps generates this runner's JIT config (app_for_job of its job)."""
    return app_for_job(_job_key(name), apps)


def _warn(message: str, app: AppAuth, scope: RunnerScope) -> None:
    from jitrunners.observability import logger

    logger.warning(message, extra={"app_id": app.app_id, "scope": scope.path})


@cache
def get_client(settings: Settings) -> GitHubClient:
    """The process-wide client (token cache and connection pool survive warm invocations)."""
    from jitrunners.aws.params import get_secret

    auth: Auth
    if settings.github_app_id:
        auth = AppAuth(settings.github_app_id, get_secret(settings.github_app_key_param))
    else:
        auth = TokenAuth(get_secret(settings.github_token_param))
    extra_apps = tuple(
        LazyAppAuth(app_id, functools.partial(get_secret, key_param))
        for app_id, key_param in settings.github_extra_apps
    )
    return GitHubClient(
        auth,
        settings.github_api_url,
        sleep=settings.pause,
        extra_apps=extra_apps,
        shaper=Shaper(settings.github_points_per_minute),
    )
