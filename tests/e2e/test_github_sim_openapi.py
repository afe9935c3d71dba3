"""The simulator answers as GitHub's published description says GitHub does.

Every REST answer (each endpoint, its success and its error answers, faults included) is held to
the OpenAPI description's schema for its status, and every webhook body it sends to the payload
schema of its event and action (tests/support/github_openapi.py, `make github-schema`). A field
GitHub always sends and the simulator left out would hide a client that breaks on it.

The schemas mark fewer fields required than GitHub sends (an error's documentation_url is
optional in `basic-error`), so each answer is also held to the fullest shape its schema describes
(`Description.gaps`): a declared field it leaves out fails unless GitHub's own example of that
answer leaves it out too, or LEFT_OUT says why; a field no schema declares fails unless LEFT_OUT
says why.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from fnmatch import fnmatchcase
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

# Gaps (`Description.gaps`, "<path>: missing|not described (<component>.<field>)") the simulator
# may have, and why; GitHub's own examples excuse the rest (`_excused`). Each must be needed.
LEFT_OUT: dict[str, str] = {
    "*: missing (basic-error.url)": "GitHub's errors carry message, documentation_url and status; "
    "`url` only where a resource moved",
    "*: missing (validation-error*.errors)": "GitHub lists `errors` for the body fields it "
    "refuses; the simulator's 422s (a busy runner, a bad cursor, a body it cannot take) carry "
    "the message alone",
    "*: not described (validation-error*.status)": "GitHub's errors carry `status` as "
    "basic-error declares it; the 422 schemas leave it out",
    "*/permissions/*: missing (*)": "an App, installation or token lists only the permissions "
    "it was granted",
    "/network_configuration_id: missing (runner-groups-org.*)": "only for a group with a "
    "private network configuration (GitHub-hosted runners)",
    "/repositories: missing (installation-token.repositories)": "listed only when a token is "
    "asked for named repositories; jitrunners asks for none",
}


def _paths(instance: Any, where: str = "") -> set[str]:
    """Every path in an instance, list indices as `*` (as `Description.gaps` names them)."""
    found = {where}
    if isinstance(instance, dict):
        for key, value in instance.items():
            found |= _paths(value, f"{where}/{key}")
    elif isinstance(instance, list):
        for value in instance:
            found |= _paths(value, f"{where}/*")
    return found


def _excused(gap: str, examples: list[set[str]]) -> bool:
    """A field left out where one of GitHub's own examples of the answer leaves it out too."""
    where, _, kind = gap.partition(": ")
    parent = where.rsplit("/", 1)[0]
    return kind.startswith("missing") and any(parent in e and where not in e for e in examples)


class Validating:
    """Checks each answer the simulator gives; remembers which (route, status) were seen and
    which LEFT_OUT entries were needed."""

    def __init__(self) -> None:
        self.description = github_openapi.load()
        self.problems: list[str] = []
        self.seen: set[tuple[str, int]] = set()
        self.needed: set[str] = set()

    def __call__(self, method: str, path: str, status: int, body: Any) -> None:
        route = _route(method, path)
        self.seen.add((route, status))
        try:
            errors = self.description.response_errors(method, path, status, body)
            op = self.description.operation(method, path)
        except LookupError as exc:  # a route GitHub's description does not have
            errors = [str(exc)]
        else:
            pointer = self.description.response_schema(op, status)
            documented = str(status) in self.description.node(op.pointer)["responses"]
            examples = self.description.examples_for(op, status) if documented else []
            if pointer is not None and not errors:
                errors = self.gaps(self.description.gaps(pointer, body), examples)
        self.problems += [f"{method} {path} -> {status}: {error}" for error in errors]

    def gaps(self, gaps: list[str], examples: list[Any]) -> list[str]:
        """The gaps neither GitHub's examples nor LEFT_OUT excuse."""
        seen_in = [_paths(example) for example in examples]
        left = []
        for gap in gaps:
            reasons = [pattern for pattern in LEFT_OUT if fnmatchcase(gap, pattern)]
            self.needed.update(reasons)
            if not reasons and not _excused(gap, seen_in):
                left.append(gap)
        return left


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
    # the App's installation on an account (several Apps: each finds its own)
    for account in ("orgs/acme", "repos/acme/widgets"):
        assert get(f"{url}/{account}/installation", headers=app, timeout=5).status_code == 200
    assert get(f"{url}/orgs/nobody/installation", headers=app, timeout=5).status_code == 404
    assert get(f"{url}/repos/nobody/x/installation", headers=bad, timeout=5).status_code == 401
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
    assert validating.needed == set(LEFT_OUT), f"not needed: {set(LEFT_OUT) - validating.needed}"


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
    sim, validating = checked
    description = github_openapi.load()
    idle = runner(sim, "i-1")
    job = sim.queue_job("acme/widgets", ["self-hosted", "linux"])
    assert until(lambda: sim.jobs[job.id].status == "queued" and not sim.jobs[job.id].held, 5)
    assert until(lambda: poll(sim, idle) is not None, 5)
    assert complete(sim, idle, job.id) == 200
    assert sim.wait_webhooks_sent()
    actions = [d.action for d in sim.deliveries]
    assert {"queued", "waiting", "in_progress", "completed"} <= set(actions), actions
    problems = []
    for d in sim.deliveries:
        body = json.loads(d.body)
        errors = description.webhook_errors(d.event, d.action, body)
        if not errors:
            schema = description.webhook_schema(d.event, d.action)
            examples = [e for e in description.examples[d.event] if e.get("action") == d.action]
            gaps = description.gaps(schema, body, hooks=True)
            errors = validating.gaps(gaps, examples)
        problems += [f"{d.action}: {error}" for error in errors]
    assert not problems, "\n".join(problems[:40])
