"""Client-side shaping of GitHub calls, and the further Apps' settings (README "Scaling")."""

from __future__ import annotations

import json

import pytest
import responses

from jitrunners.config import ConfigError, Settings
from jitrunners.github.auth import TokenAuth
from jitrunners.github.client import GitHubClient, GitHubRateLimited, app_for_runner
from jitrunners.github.shaping import Shaper
from jitrunners.models import runner_name
from tests.support.github import API

NOW = 1_800_000_000.0
JOB_URL = f"{API}/repos/a/b/actions/jobs/5"


class Clock:
    def __init__(self) -> None:
        self.now = NOW
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_points_are_counted_in_a_sliding_minute_as_github_counts_them() -> None:
    clock = Clock()
    shaper = Shaper(points_per_minute=12, clock=clock)
    assert shaper.admit("installation 1", "POST") == 0  # 5
    clock.now += 10
    assert shaper.admit("installation 1", "POST") == 0  # 10
    clock.now += 10
    # 15 > 12: the first POST leaves the window 60 s after it was made, 40 s from now.
    assert shaper.admit("installation 1", "POST") == pytest.approx(40)
    assert shaper.admit("installation 1", "GET") == 0  # 11: a GET (1 point) still fits
    assert shaper.admit("installation 2", "POST") == 0  # another installation's own minute
    clock.now += 40
    assert shaper.admit("installation 1", "POST") == 0
    assert shaper.held == {"points": 1}


@responses.activate
def test_a_secondary_limit_holds_its_budget_back_until_retry_after() -> None:
    clock = Clock()
    refused = responses.get(
        JOB_URL, status=403, headers={"Retry-After": "30"}, json={"message": "secondary"}
    )
    client = GitHubClient(TokenAuth("ghp_x"), API, sleep=clock.sleep, clock=clock)
    impatient = client.without_waiting()
    with pytest.raises(GitHubRateLimited) as sent:
        impatient.get_job("a/b", 5, None)
    assert sent.value.status == 403
    # Known now: the next call is not sent while the retry-after runs (GitHub sees one request).
    clock.now += 10
    with pytest.raises(GitHubRateLimited) as held:
        impatient.get_job("a/b", 5, None)
    assert held.value.status is None
    assert held.value.retry_after_s == pytest.approx(20)
    assert refused.call_count == 1
    responses.replace(responses.GET, JOB_URL, json={"id": 5, "status": "queued"})
    clock.now += 20
    assert impatient.get_job("a/b", 5, None) is not None
    assert clock.slept == []


@responses.activate
def test_a_spent_hourly_budget_holds_calls_until_its_reset() -> None:
    clock = Clock()
    reset = int(NOW) + 1200
    spent = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    answered = responses.get(JOB_URL, json={"id": 5, "status": "queued"}, headers=spent)
    client = GitHubClient(TokenAuth("ghp_x"), API, sleep=clock.sleep, clock=clock)
    assert client.get_job("a/b", 5, None) is not None  # the budget's last request
    with pytest.raises(GitHubRateLimited) as held:
        client.get_job("a/b", 5, None)  # a waiting client does not sleep 20 minutes either
    assert held.value.retry_after_s == pytest.approx(1200)
    assert answered.call_count == 1
    assert clock.slept == []
    clock.now = reset + 1
    assert client.get_job("a/b", 5, None) is not None


@responses.activate
def test_a_waiting_client_sleeps_a_short_hold_and_then_sends() -> None:
    clock = Clock()
    answered = responses.get(JOB_URL, json={"id": 5, "status": "queued"})
    client = GitHubClient(
        TokenAuth("ghp_x"), API, sleep=clock.sleep, clock=clock, shaper=Shaper(2, clock)
    )
    assert client.get_job("a/b", 5, None) is not None
    clock.now += 57
    assert client.get_job("a/b", 5, None) is not None
    assert client.get_job("a/b", 5, None) is not None  # 3 points: 3 s until the first expires
    assert clock.slept == [pytest.approx(3)]
    assert answered.call_count == 3


def test_a_job_keeps_its_app_whatever_instance_runs_it() -> None:
    names = [runner_name(f"i-{n:017x}", 4242, 1) for n in range(5)]
    assert len({app_for_runner(name, 3) for name in names}) == 1
    spread = {app_for_runner(runner_name("i-0123abcd", job, 1), 3) for job in range(1000, 1030)}
    assert spread == {0, 1, 2}


def _extra(*apps: dict[str, str]) -> dict[str, str]:
    return {"GITHUB_APP_ID": "1", "GITHUB_EXTRA_APPS": json.dumps(list(apps))}


def test_further_apps_are_read_from_the_environment() -> None:
    env = _extra(
        {"app_id": "2", "key_param": "/p/secrets/github-app-key-2"},
        {"app_id": "3", "key_param": "/p/secrets/github-app-key-3"},
    )
    settings = Settings.from_env({**env, "GITHUB_POINTS_PER_MINUTE": "450"})
    assert settings.github_extra_apps == (
        ("2", "/p/secrets/github-app-key-2"),
        ("3", "/p/secrets/github-app-key-3"),
    )
    assert settings.github_points_per_minute == 450
    assert Settings.from_env({}).github_extra_apps == ()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"GITHUB_EXTRA_APPS": "[]x"}, "not JSON"),
        (_extra({"app_id": "2"}), '{"app_id", "key_param"}'),
        (_extra({"app_id": "two", "key_param": "/k"}), "numeric"),
        (_extra({"app_id": "2", "key_param": "/k"}, {"app_id": "2", "key_param": "/j"}), "twice"),
        (_extra({"app_id": "1", "key_param": "/k"}), "primary App"),
        (
            {"GITHUB_EXTRA_APPS": json.dumps([{"app_id": "2", "key_param": "/k"}])},
            "need GITHUB_APP_ID",
        ),
    ],
)
def test_a_wrong_further_app_fails_the_cold_start(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match="GITHUB_EXTRA_APPS") as error:
        Settings.from_env(env)
    assert says in str(error.value)
