"""The GitHub adapter against `responses`: auth, retries, rate limits, pagination, typed errors."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import jwt
import pytest
import responses

from jitrunners.github.auth import AppAuth, TokenAuth
from jitrunners.github.client import (
    GitHubAuthError,
    GitHubClient,
    GitHubError,
    GitHubRateLimited,
    RunnerScope,
)
from tests.support.github import API, private_key_pem, public_key_pem

NOW = 1_800_000_000.0
ORG = RunnerScope("org", "acme")
REPO = RunnerScope("repo", "acme", "acme/widgets")


class Clock:
    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def decode(token: str) -> dict[str, object]:
    """Verify the signature; the fixed test clock is not the wall clock, so skip time checks."""
    options = {"verify_exp": False, "verify_iat": False, "verify_nbf": False}
    return jwt.decode(token, public_key_pem(), algorithms=["RS256"], options=options)


def app_client(clock: Clock) -> GitHubClient:
    auth = AppAuth("12345", private_key_pem(), clock=clock)
    return GitHubClient(auth, API, sleep=clock.sleep, clock=clock)


def token_client(clock: Clock) -> GitHubClient:
    return GitHubClient(TokenAuth("ghp_secret"), API, sleep=clock.sleep, clock=clock)


def add_token(rsps: responses.RequestsMock, installation: int = 99, expires_in: float = 3600):
    expires = datetime.fromtimestamp(NOW + expires_in, UTC).isoformat().replace("+00:00", "Z")
    return rsps.post(
        f"{API}/app/installations/{installation}/access_tokens",
        json={"token": f"ghs_inst{installation}", "expires_at": expires},
        status=201,
    )


def test_app_jwt_claims_are_backdated_short_lived_and_signed(clock: Clock) -> None:
    token = AppAuth("12345", private_key_pem(), clock=clock).app_jwt()
    claims = decode(token)
    assert claims == {"iat": int(NOW) - 60, "exp": int(NOW) + 540, "iss": "12345"}
    assert jwt.get_unverified_header(token)["alg"] == "RS256"


def test_app_jwt_is_reused_while_it_has_four_minutes_left(clock: Clock) -> None:
    auth = AppAuth("12345", private_key_pem(), clock=clock)
    first = auth.app_jwt()
    clock.now += 299
    assert auth.app_jwt() == first
    clock.now += 1  # 240 s left: a new one
    second = auth.app_jwt()
    assert second != first
    assert decode(second) == {"iat": int(NOW) + 240, "exp": int(NOW) + 840, "iss": "12345"}


@responses.activate
def test_installation_token_is_minted_once_and_reused_until_near_expiry(clock: Clock) -> None:
    mint = add_token(responses.mock)
    job = responses.get(
        f"{API}/repos/acme/widgets/actions/jobs/1", json={"id": 1, "status": "queued"}
    )
    client = app_client(clock)
    for _ in range(3):
        assert client.get_job("acme/widgets", 1, 99).status == "queued"
    assert mint.call_count == 1
    assert job.calls[0].request.headers["Authorization"] == "Bearer ghs_inst99"
    assert job.calls[0].request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    # The mint request authenticates with the App JWT.
    minted_with = mint.calls[0].request.headers["Authorization"].removeprefix("Bearer ")
    assert decode(minted_with)["iss"] == "12345"

    clock.now += 3600 - 299  # inside the 5-minute margin: a new token
    client.get_job("acme/widgets", 1, 99)
    assert mint.call_count == 2


@responses.activate
def test_tokens_are_cached_per_installation(clock: Clock) -> None:
    add_token(responses.mock, 1)
    add_token(responses.mock, 2)
    responses.get(f"{API}/repos/a/b/actions/jobs/1", json={"id": 1, "status": "queued"})
    client = app_client(clock)
    client.get_job("a/b", 1, 1)
    client.get_job("a/b", 1, 2)
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer ghs_inst2"


@responses.activate
def test_token_auth_sends_the_token(clock: Clock) -> None:
    responses.get(f"{API}/repos/a/b/actions/jobs/5", json={"id": 5, "status": "in_progress"})
    job = token_client(clock).get_job("a/b", 5, None)
    assert job is not None
    assert job.status == "in_progress"
    assert responses.calls[0].request.headers["Authorization"] == "Bearer ghp_secret"


@responses.activate
def test_get_job_404_is_none(clock: Clock) -> None:
    responses.get(f"{API}/repos/a/b/actions/jobs/5", status=404, json={"message": "Not Found"})
    assert token_client(clock).get_job("a/b", 5, None) is None


@responses.activate
def test_5xx_is_retried_with_bounded_backoff(clock: Clock) -> None:
    url = f"{API}/repos/a/b/actions/jobs/5"
    responses.get(url, status=502)
    responses.get(url, status=503)
    responses.get(url, json={"id": 5, "status": "queued"})
    client = token_client(clock)
    assert client.get_job("a/b", 5, None) is not None
    assert clock.slept == [0.5, 1.0]
    assert client.calls["GET /repos/{repo}/actions/jobs/{id}"] == 3


@responses.activate
def test_5xx_that_persists_raises_a_retryable_error(clock: Clock) -> None:
    responses.get(f"{API}/repos/a/b/actions/jobs/5", status=500)
    with pytest.raises(GitHubError) as info:
        token_client(clock).get_job("a/b", 5, None)
    assert info.value.retryable
    assert info.value.status == 500
    assert len(responses.calls) == 3


@responses.activate
def test_connection_errors_are_retried(clock: Clock) -> None:
    import requests

    url = f"{API}/repos/a/b/actions/jobs/5"
    responses.get(url, body=requests.ConnectionError("reset"))
    responses.get(url, json={"id": 5, "status": "queued"})
    assert token_client(clock).get_job("a/b", 5, None) is not None


@responses.activate
def test_short_retry_after_is_waited_inline(clock: Clock) -> None:
    url = f"{API}/repos/a/b/actions/jobs/5"
    responses.get(url, status=403, headers={"Retry-After": "2"}, json={"message": "secondary"})
    responses.get(url, json={"id": 5, "status": "queued"})
    assert token_client(clock).get_job("a/b", 5, None) is not None
    assert clock.slept == [2.0]


@responses.activate
def test_a_client_without_waiting_raises_even_a_short_retry_after(clock: Clock) -> None:
    url = f"{API}/repos/a/b/actions/jobs/5"
    for _ in range(2):
        responses.get(url, status=403, headers={"Retry-After": "2"}, json={"message": "secondary"})
    responses.get(url, json={"id": 5, "status": "queued"})
    client = token_client(clock)
    with pytest.raises(GitHubRateLimited) as info:
        client.without_waiting().get_job("a/b", 5, None)
    assert info.value.retry_after_s == 2
    assert clock.slept == []
    # The waiting client waits (first out the retry-after both copies learned, then the next
    # answer's), and both count calls in one place.
    assert client.get_job("a/b", 5, None) is not None
    assert clock.slept == [2.0, 2.0]
    assert client.calls["GET /repos/{repo}/actions/jobs/{id}"] == 3


@responses.activate
def test_long_secondary_limit_raises_rate_limited_without_sleeping(clock: Clock) -> None:
    responses.get(
        f"{API}/repos/a/b/actions/jobs/5",
        status=403,
        headers={"Retry-After": "60"},
        json={"message": "You have exceeded a secondary rate limit"},
    )
    with pytest.raises(GitHubRateLimited) as info:
        token_client(clock).get_job("a/b", 5, None)
    assert info.value.retry_after_s == 60
    assert clock.slept == []
    assert len(responses.calls) == 1


@responses.activate
def test_primary_limit_uses_reset_header(clock: Clock) -> None:
    responses.get(
        f"{API}/repos/a/b/actions/jobs/5",
        status=403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 120)},
        json={"message": "API rate limit exceeded"},
    )
    with pytest.raises(GitHubRateLimited) as info:
        token_client(clock).get_job("a/b", 5, None)
    assert info.value.retry_after_s == 120


@responses.activate
def test_403_without_rate_limit_is_a_permanent_error(clock: Clock) -> None:
    responses.post(
        f"{API}/orgs/acme/actions/runners/generate-jitconfig",
        status=403,
        json={"message": "Resource not accessible by integration"},
    )
    with pytest.raises(GitHubError) as info:
        token_client(clock).generate_jitconfig(ORG, "i-1", ["self-hosted"], 1, None)
    assert not info.value.retryable
    assert not isinstance(info.value, GitHubRateLimited)


@responses.activate
def test_revoked_cached_token_is_reminted_once(clock: Clock) -> None:
    mint = add_token(responses.mock)
    url = f"{API}/repos/a/b/actions/jobs/1"
    responses.get(url, status=401)
    responses.get(url, json={"id": 1, "status": "queued"})
    assert app_client(clock).get_job("a/b", 1, 99) is not None
    assert mint.call_count == 2


@responses.activate
def test_bad_credentials_raise_auth_error(clock: Clock) -> None:
    responses.get(f"{API}/repos/a/b/actions/jobs/1", status=401)
    with pytest.raises(GitHubAuthError):
        token_client(clock).get_job("a/b", 1, None)


@pytest.mark.parametrize(("scope", "path"), [(ORG, "orgs/acme"), (REPO, "repos/acme/widgets")])
@responses.activate
def test_generate_jitconfig_per_scope(clock: Clock, scope: RunnerScope, path: str) -> None:
    call = responses.post(
        f"{API}/{path}/actions/runners/generate-jitconfig",
        status=201,
        json={"runner": {"id": 7, "name": "i-1"}, "encoded_jit_config": "SECRETJIT"},
    )
    config = token_client(clock).generate_jitconfig(scope, "i-1", ["self-hosted", "x64"], 3, None)
    assert config.runner_id == 7
    assert config.encoded == "SECRETJIT"
    assert "SECRETJIT" not in repr(config)
    sent = json.loads(call.calls[0].request.body)
    assert sent == {"name": "i-1", "runner_group_id": 3, "labels": ["self-hosted", "x64"]}


@responses.activate
def test_list_runners_follows_link_pagination_and_find_delete(clock: Clock) -> None:
    url = f"{API}/orgs/acme/actions/runners"
    page2 = f"{url}?per_page=100&page=2"
    runner = {"status": "online", "busy": False, "labels": [{"name": "self-hosted"}]}
    responses.get(
        url,
        json={"runners": [{"id": 1, "name": "i-1", **runner}]},
        headers={"Link": f'<{page2}>; rel="next"'},
        match=[responses.matchers.query_param_matcher({"per_page": "100"})],
    )
    responses.get(
        page2,
        json={"runners": [{"id": 2, "name": "i-2", **runner}]},
        match=[responses.matchers.query_param_matcher({"per_page": "100", "page": "2"})],
    )
    client = token_client(clock)
    assert [r.name for r in client.list_runners(ORG, None)] == ["i-1", "i-2"]

    responses.get(
        url,
        json={"runners": [{"id": 2, "name": "i-2", **runner}]},
        match=[responses.matchers.query_param_matcher({"name": "i-2"})],
    )
    found = client.find_runner(ORG, "i-2", None)
    assert found is not None
    assert found.id == 2
    assert found.labels == ("self-hosted",)

    responses.delete(f"{url}/2", status=204)
    responses.delete(f"{url}/3", status=404)
    assert client.delete_runner(ORG, 2, None) is True
    assert client.delete_runner(ORG, 3, None) is False


@responses.activate
def test_app_endpoints_use_the_jwt_and_cursor_pagination(clock: Clock) -> None:
    url = f"{API}/app/hook/deliveries"
    nxt = f"{url}?per_page=100&cursor=abc"

    def delivery(i: int, at: str) -> dict[str, object]:
        return {
            "id": i,
            "guid": f"g{i}",
            "event": "workflow_job",
            "action": "queued",
            "status_code": 502,
            "delivered_at": at,
            "redelivery": False,
        }

    responses.get(
        url,
        json=[delivery(3, "2027-01-15T10:00:00Z")],
        headers={"Link": f'<{nxt}>; rel="next"'},
        match=[responses.matchers.query_param_matcher({"per_page": "100"})],
    )
    responses.get(
        nxt,
        json=[delivery(2, "2027-01-15T09:00:00Z"), delivery(1, "2027-01-10T09:00:00Z")],
        match=[responses.matchers.query_param_matcher({"per_page": "100", "cursor": "abc"})],
    )
    client = app_client(clock)
    since = datetime(2027, 1, 14, tzinfo=UTC)
    assert [d.id for d in client.list_deliveries(since)] == [3, 2]
    auth = responses.calls[0].request.headers["Authorization"].removeprefix("Bearer ")
    assert decode(auth)["iss"] == "12345"

    attempts = responses.post(f"{url}/3/attempts", status=202)
    client.redeliver(3)
    assert attempts.call_count == 1

    responses.get(f"{API}/app/installations", json=[{"id": 99, "account": {"login": "acme"}}])
    assert [(i.id, i.account) for i in client.list_installations()] == [(99, "acme")]


@responses.activate
def test_installations_on_an_enterprise_or_without_an_account_are_listed(clock: Clock) -> None:
    # GitHub's description: `account` is a user/organization (login), an enterprise (slug,
    # no login), or null.
    installations = [
        {"id": 1, "account": {"login": "acme", "type": "Organization"}},
        {"id": 2, "account": {"slug": "octo-business", "name": "Octo Business"}},
        {"id": 3, "account": None},
    ]
    responses.get(f"{API}/app/installations", json=installations)
    listed = [(i.id, i.account) for i in app_client(clock).list_installations()]
    assert listed == [(1, "acme"), (2, "octo-business"), (3, "")]


def test_app_endpoints_refuse_token_mode(clock: Clock) -> None:
    with pytest.raises(GitHubAuthError):
        token_client(clock).redeliver(1)


@responses.activate
def test_rerun_job(clock: Clock) -> None:
    call = responses.post(f"{API}/repos/a/b/actions/jobs/9/rerun", status=201)
    token_client(clock).rerun_job("a/b", 9, None)
    assert call.call_count == 1


def test_reprs_hide_secrets() -> None:
    assert "ghp_secret" not in repr(TokenAuth("ghp_secret"))
    assert "PRIVATE" not in repr(AppAuth("1", private_key_pem()))


@responses.activate
def test_get_runner_group_reads_visibility_and_public_repositories(clock: Clock) -> None:
    responses.get(
        f"{API}/orgs/acme/actions/runner-groups/7",
        json={
            "id": 7,
            "name": "ci",
            "visibility": "selected",
            "default": False,
            "allows_public_repositories": False,
            "selected_repositories_url": f"{API}/orgs/acme/actions/runner-groups/7/repositories",
        },
    )
    responses.get(f"{API}/orgs/acme/actions/runner-groups/8", status=404, json={})
    client = token_client(clock)
    group = client.get_runner_group("acme", 7, None)
    assert group is not None
    assert (group.visibility, group.allows_public_repositories) == ("selected", False)
    assert client.get_runner_group("acme", 8, None) is None


@responses.activate
def test_list_runs_filters_by_status_pages_and_reads_the_repository(clock: Clock) -> None:
    url = f"{API}/repos/acme/app/actions/runs"
    page2 = f"{url}?status=queued&exclude_pull_requests=true&per_page=100&page=2"
    repository = {"full_name": "Acme/App", "private": True, "visibility": "private"}
    first = {"per_page": "100", "status": "queued", "exclude_pull_requests": "true"}
    responses.get(
        url,
        json={
            "total_count": 2,
            "workflow_runs": [
                {
                    "id": 7,
                    "status": "queued",
                    "run_attempt": 2,
                    "repository": repository,
                    "created_at": "2030-01-01T00:00:00Z",
                },
            ],
        },
        headers={"Link": f'<{page2}>; rel="next"'},
        match=[responses.matchers.query_param_matcher(first)],
    )
    responses.get(
        page2,
        json={
            "total_count": 2,
            "workflow_runs": [
                {
                    "id": 8,
                    "status": "queued",
                    "repository": {
                        "full_name": "acme/app",
                        "private": True,
                        "visibility": "public",
                    },
                },
            ],
        },
        match=[responses.matchers.query_param_matcher({**first, "page": "2"})],
    )

    client = token_client(clock)
    runs = list(client.list_runs("acme/app", "queued", None))

    assert [(r.id, r.repo, r.run_attempt, r.private) for r in runs] == [
        (7, "Acme/App", 2, True),
        (8, "acme/app", 1, False),  # visibility public wins over the private flag
    ]
    assert runs[0].created_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert runs[1].created_at is None
    assert client.calls == Counter({"GET /repos/{repo}/actions/runs": 2})


@responses.activate
def test_list_run_jobs_asks_for_the_latest_executions_and_types_them(clock: Clock) -> None:
    url = f"{API}/repos/acme/app/actions/runs/7/jobs"
    responses.get(
        url,
        json={
            "total_count": 2,
            "jobs": [
                {
                    "id": 70,
                    "run_id": 7,
                    "run_attempt": 2,
                    "status": "queued",
                    "labels": ["self-hosted", "linux"],
                    "runner_name": None,
                    "created_at": "2030-01-01T00:01:00Z",
                },
                {
                    "id": 71,
                    "run_id": 7,
                    "run_attempt": 2,
                    "status": "in_progress",
                    "labels": ["self-hosted"],
                    "runner_name": "i-0abc",
                    "created_at": "2030-01-01T00:00:30Z",
                },
            ],
        },
        match=[responses.matchers.query_param_matcher({"per_page": "100", "filter": "latest"})],
    )

    jobs = list(token_client(clock).list_run_jobs("acme/app", 7, None))

    assert [(j.id, j.run_id, j.run_attempt, j.status, j.runner_name) for j in jobs] == [
        (70, 7, 2, "queued", None),
        (71, 7, 2, "in_progress", "i-0abc"),
    ]
    assert jobs[0].labels == ("self-hosted", "linux")
    assert jobs[0].created_at == datetime(2030, 1, 1, 0, 1, tzinfo=UTC)


def _two_app_client(clock: Clock) -> tuple[GitHubClient, int]:
    """The primary App (installation 99) and a further one (installation 555) on acme/widgets,
    tokens cached; and a job id the further App reads."""
    from jitrunners.github.auth import LazyAppAuth
    from jitrunners.github.client import app_for_job

    primary = AppAuth("12345", private_key_pem(), clock=clock)
    primary.store_token(99, "ghs_primary", NOW + 3600)
    further = LazyAppAuth("67890", private_key_pem, clock=clock)
    auth = further.get()
    assert auth is not None
    auth.store_installation("repos/acme/widgets", 555, 3600)
    auth.store_token(555, "ghs_further", NOW + 3600)
    client = GitHubClient(primary, API, sleep=clock.sleep, clock=clock, extra_apps=(further,))
    job_id = next(j for j in range(1, 100) if app_for_job(str(j), 2) == 1)
    return client, job_id


@responses.activate
def test_a_job_is_read_by_its_further_app_and_by_the_primary_when_that_app_may_not(
    clock: Clock,
) -> None:
    client, job_id = _two_app_client(clock)
    url = f"{API}/repos/acme/widgets/actions/jobs/{job_id}"
    read = responses.get(url, json={"id": job_id, "status": "queued"})
    assert client.get_job("acme/widgets", job_id, 99).status == "queued"
    assert read.calls[0].request.headers["Authorization"] == "Bearer ghs_further"

    # The further App lacks the Actions permission on the repository: GitHub's 403 without rate
    # limit signals. The primary App reads it.
    responses.replace(
        responses.GET, url, status=403, json={"message": "Resource not accessible by integration"}
    )
    responses.add(responses.GET, url, json={"id": job_id, "status": "in_progress"})
    assert client.get_job("acme/widgets", job_id, 99).status == "in_progress"
    asked = [c.request.headers["Authorization"] for c in responses.calls[1:]]
    assert asked == ["Bearer ghs_further", "Bearer ghs_primary"]

    # A job that does not exist is None, asked once: a 404 is an answer, not a refusal.
    missing = responses.get(f"{API}/repos/acme/widgets/actions/jobs/{job_id + 1000}", status=404)
    assert client.get_job("acme/widgets", job_id + 1000, 99) is None
    assert missing.call_count == 1


@responses.activate
def test_a_run_s_job_statuses_are_read_by_the_run_s_app_page_by_page_and_by_the_primary_when_that_app_may_not(  # noqa: E501
    clock: Clock,
) -> None:
    from jitrunners.github.client import app_for_job

    client, _ = _two_app_client(clock)
    run_id = next(r for r in range(1, 100) if app_for_job(str(r), 2) == 1)
    url = f"{API}/repos/acme/widgets/actions/runs/{run_id}/jobs"
    page_two = f"{url}?filter=latest&per_page=100&page=2"
    first = responses.get(
        url,
        json={"jobs": [{"id": 1, "status": "queued", "run_attempt": 2}]},
        headers={"Link": f'<{page_two}>; rel="next"'},
        match=[responses.matchers.query_param_matcher({"per_page": "100", "filter": "latest"})],
    )
    responses.get(
        page_two,
        json={"jobs": [{"id": 2, "status": "completed", "conclusion": "success"}]},
        match=[
            responses.matchers.query_param_matcher(
                {"filter": "latest", "per_page": "100", "page": "2"}
            )
        ],
    )

    jobs = list(client.run_job_statuses("acme/widgets", run_id, 99))

    assert [(j.id, j.status, j.conclusion, j.run_attempt) for j in jobs] == [
        (1, "queued", None, 2),
        (2, "completed", "success", 1),
    ]
    assert first.calls[0].request.headers["Authorization"] == "Bearer ghs_further"
    assert len(responses.calls) == 2

    # The further App may not read Actions there: the primary App lists the run.
    responses.replace(responses.GET, url, status=403, json={"message": "Resource not accessible"})
    responses.add(responses.GET, url, json={"jobs": [{"id": 1, "status": "in_progress"}]})
    assert [j.status for j in client.run_job_statuses("acme/widgets", run_id, 99)] == [
        "in_progress"
    ]
    asked = [c.request.headers["Authorization"] for c in responses.calls[2:]]
    assert asked == ["Bearer ghs_further", "Bearer ghs_primary"]


@responses.activate
def test_the_housekeeper_s_listing_of_a_run_s_jobs_is_read_by_the_run_s_app_too(
    clock: Clock,
) -> None:
    from jitrunners.github.client import app_for_job

    client, _ = _two_app_client(clock)
    run_id = next(r for r in range(1, 100) if app_for_job(str(r), 2) == 1)
    mine = next(r for r in range(1, 100) if app_for_job(str(r), 2) == 0)
    body = {"jobs": [{"id": 1, "run_id": run_id, "status": "queued", "labels": []}]}
    further = responses.get(f"{API}/repos/acme/widgets/actions/runs/{run_id}/jobs", json=body)
    primary = responses.get(f"{API}/repos/acme/widgets/actions/runs/{mine}/jobs", json=body)

    assert [j.id for j in client.list_run_jobs("acme/widgets", run_id, 99)] == [1]
    assert [j.id for j in client.list_run_jobs("acme/widgets", mine, 99)] == [1]

    assert further.calls[0].request.headers["Authorization"] == "Bearer ghs_further"
    assert primary.calls[0].request.headers["Authorization"] == "Bearer ghs_primary"
