"""The simulator answers as GitHub's published description says GitHub does.

Every REST answer (each endpoint, its success and its error answers, faults included) is held to
the OpenAPI description's schema for its status, and every webhook body it sends to the payload
schema of its event and action (tests/support/github_openapi.py, `make github-schema`). A field
GitHub always sends and the simulator left out would hide a client that breaks on it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from devstack import github_sim
from devstack.github_sim import Faults, GitHubSim
from tests.e2e.conftest import until
from tests.e2e.test_github_sim import FAST, app_jwt, complete, jit, poll, runner, token
from tests.support import github_openapi

pytestmark = pytest.mark.e2e


class Validating:
    """Checks each answer the simulator gives; remembers which (route, status) were seen."""

    def __init__(self) -> None:
        self.description = github_openapi.load()
        self.problems: list[str] = []
        self.seen: set[tuple[str, int]] = set()

    def __call__(self, method: str, path: str, status: int, body: Any) -> None:
        route = _route(method, path)
        self.seen.add((route, status))
        try:
            errors = self.description.response_errors(method, path, status, body)
        except LookupError as exc:  # a route GitHub's description does not have
            errors = [str(exc)]
        self.problems += [f"{method} {path} -> {status}: {error}" for error in errors]


def _route(method: str, path: str) -> str:
    for route_method, pattern, name in github_sim._ROUTES:
        if route_method == method and pattern.match(path):
            return name
    return f"{method} {path}"


@pytest.fixture
def checked() -> Iterator[tuple[GitHubSim, Validating]]:
    validating = Validating()
    sim = GitHubSim(seed=7, faults=Faults(approval=1.0), timings=FAST)
    sim.observers.append(validating)
    with sim:
        yield sim, validating


def _app(sim: GitHubSim) -> dict[str, str]:
    return {"Authorization": f"Bearer {app_jwt(sim)}"}


def _exercise(sim: GitHubSim) -> None:
    """Every REST route, answering success and each error it has."""
    url, app = sim.url, _app(sim)
    get, post, delete = requests.get, requests.post, requests.delete
    # tokens and the App's own endpoints
    headers = token(sim)
    assert post(f"{url}/app/installations/1/access_tokens", headers=app, timeout=5).status_code
    bad = {"Authorization": "Bearer not-a-jwt"}
    assert post(f"{url}/app/installations/99/access_tokens", headers=bad, timeout=5).status_code
    assert get(f"{url}/app/installations", headers=app, timeout=5).status_code == 200
    assert get(f"{url}/app/installations", headers=bad, timeout=5).status_code == 401
    # runners, org and repository scope
    assert jit(sim, headers, "i-1").status_code == 201
    assert jit(sim, headers, "i-1").status_code == 409
    assert jit(sim, headers, "i-2", scope="repos/acme/widgets").status_code == 201
    bad_body = {"name": "i-3", "labels": [], "runner_group_id": 1}
    org = f"{url}/orgs/acme/actions/runners"
    assert post(f"{org}/generate-jitconfig", headers=headers, json=bad_body, timeout=5).ok is False
    for scope in ("orgs/acme", "repos/acme/widgets"):
        listed = get(f"{url}/{scope}/actions/runners", headers=headers, timeout=5).json()
        one = listed["runners"][0]["id"]
        assert get(f"{url}/{scope}/actions/runners/{one}", headers=headers, timeout=5).ok
        assert get(f"{url}/{scope}/actions/runners/1", headers=headers, timeout=5).status_code
        assert delete(f"{url}/{scope}/actions/runners/{one}", headers=headers, timeout=5).ok
        assert delete(f"{url}/{scope}/actions/runners/1", headers=headers, timeout=5).status_code
    got = get(f"{org}?name=i-1&per_page=1", headers=headers, timeout=5)
    assert got.status_code == 200
    # a busy runner cannot be deleted (422)
    busy = runner(sim, "i-busy")
    job = sim.queue_job("acme/widgets", ["self-hosted", "linux"])
    assert until(lambda: sim.jobs[job.id].status == "queued" and not sim.jobs[job.id].held, 5)
    assert poll(sim, busy) is not None
    busy_id = busy["runner_id"]
    assert delete(f"{org}/{busy_id}", headers=headers, timeout=5).status_code == 422
    # runner groups
    sim.set_runner_group(4, exists=False)
    groups = f"{url}/orgs/acme/actions/runner-groups"
    assert get(f"{groups}/1", headers=headers, timeout=5).status_code == 200
    assert get(f"{groups}/4", headers=headers, timeout=5).status_code == 404
    # jobs, re-runs, runs
    jobs = f"{url}/repos/acme/widgets/actions/jobs"
    assert get(f"{jobs}/{job.id}", headers=headers, timeout=5).status_code == 200
    assert get(f"{jobs}/1", headers=headers, timeout=5).status_code == 404
    assert post(f"{jobs}/{job.id}/rerun", headers=headers, timeout=5).status_code == 403
    assert complete(sim, busy, job.id) == 200
    assert get(f"{jobs}/{job.id}", headers=headers, timeout=5).status_code == 200
    assert post(f"{jobs}/{job.id}/rerun", headers=headers, timeout=5).status_code == 201
    runs = f"{url}/repos/acme/widgets/actions/runs"
    for status in ("queued", "completed", "in_progress"):
        query = {"status": status, "exclude_pull_requests": "true", "per_page": 1}
        assert get(runs, headers=headers, params=query, timeout=5).status_code == 200
    assert get(f"{runs}/{job.run_id}/jobs", headers=headers, timeout=5).status_code == 200
    assert get(f"{runs}/{job.run_id}/jobs?filter=all", headers=headers, timeout=5).ok
    assert get(f"{runs}/{job.run_id}/jobs?filter=x", headers=headers, timeout=5).status_code
    assert get(f"{runs}/1/jobs", headers=headers, timeout=5).status_code == 404
    # deliveries (the webhook URL is unset: each is recorded as failed)
    assert sim.wait_webhooks_sent()
    deliveries = f"{url}/app/hook/deliveries"
    listed = get(deliveries, headers=app, params={"per_page": 2}, timeout=5)
    assert listed.status_code == 200
    first = listed.json()[0]["id"]
    assert get(f"{deliveries}?cursor=x", headers=app, timeout=5).status_code == 422
    assert get(f"{deliveries}/{first}", headers=app, timeout=5).status_code == 200
    assert get(f"{deliveries}/1", headers=app, timeout=5).status_code == 404
    assert post(f"{deliveries}/{first}/attempts", headers=app, timeout=5).status_code == 202
    assert post(f"{deliveries}/1/attempts", headers=app, timeout=5).status_code == 404
    # the App manifest flow: GitHub's page hands a one-time code to the redirect URL
    manifest = {
        "name": "jitrunners-acme",
        "url": "https://example.com/jitrunners",
        "redirect_url": "http://127.0.0.1:9/callback",
        "hook_attributes": {"url": "https://example.com/webhook", "active": True},
        "default_events": ["workflow_job"],
        "default_permissions": {"organization_self_hosted_runners": "write", "actions": "read"},
    }
    page = post(
        f"{url}/organizations/acme/settings/apps/new",
        data={"manifest": json.dumps(manifest), "state": "xyz"},
        allow_redirects=False,
        timeout=5,
    )
    assert page.status_code == 302
    code = parse_qs(urlsplit(page.headers["Location"]).query)["code"][0]
    conversions = f"{url}/app-manifests/{code}/conversions"
    assert post(conversions, timeout=5).status_code == 201
    assert post(conversions, timeout=5).status_code == 404  # a code converts once


def test_every_rest_answer_matches_githubs_description(
    checked: tuple[GitHubSim, Validating],
) -> None:
    sim, validating = checked
    _exercise(sim)
    assert not validating.problems, "\n".join(validating.problems[:40])
    routes = {name for _, _, name in github_sim._ROUTES if not name.startswith("sim_")}
    answered = {route for route, _ in validating.seen}
    assert routes <= answered, f"routes not exercised: {sorted(routes - answered)}"
    failed = {route for route, status in validating.seen if status >= 400}
    # Listing runners or runs fails only for credentials and faults (the test below).
    assert routes - {"runners", "runs"} <= failed, sorted(routes - failed)


def test_faults_answer_as_github_does() -> None:
    validating = Validating()
    with GitHubSim(seed=3, faults=Faults(github_5xx=0.3, github_rate_limit=0.3)) as sim:
        sim.observers.append(validating)
        statuses = {
            requests.get(f"{sim.url}/app/installations", headers=_app(sim), timeout=5).status_code
            for _ in range(20)
        }
    assert {200, 403, 502} <= statuses
    assert not validating.problems, "\n".join(validating.problems)


def test_every_webhook_body_matches_its_payload_schema(
    checked: tuple[GitHubSim, Validating],
) -> None:
    sim, _ = checked
    description = github_openapi.load()
    idle = runner(sim, "i-1")
    job = sim.queue_job("acme/widgets", ["self-hosted", "linux"])
    assert until(lambda: sim.jobs[job.id].status == "queued" and not sim.jobs[job.id].held, 5)
    assert until(lambda: poll(sim, idle) is not None, 5)
    assert complete(sim, idle, job.id) == 200
    assert sim.wait_webhooks_sent()
    actions = [d.action for d in sim.deliveries]
    assert {"queued", "waiting", "in_progress", "completed"} <= set(actions), actions
    problems = [
        f"{d.action}: {error}"
        for d in sim.deliveries
        for error in description.webhook_errors(d.event, d.action, json.loads(d.body))
    ]
    assert not problems, "\n".join(problems[:40])
