"""The GitHub simulator answers the REST calls jitrunners makes the way GitHub does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import requests

from devstack.github_sim import Faults, GitHubSim

pytestmark = pytest.mark.e2e


def app_jwt(sim: GitHubSim, *, iss: Any = None, key: str | None = None) -> str:
    now = int(time.time())
    claims = {"iat": now - 60, "exp": now + 540, "iss": str(iss or sim.app_id)}
    return jwt.encode(claims, key or sim.private_key_pem, algorithm="RS256")


def token(sim: GitHubSim) -> dict[str, str]:
    answer = requests.post(
        f"{sim.url}/app/installations/{sim.installation_id}/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(sim)}"},
        timeout=5,
    )
    assert answer.status_code == 201
    return {"Authorization": f"token {answer.json()['token']}"}


def jit(sim: GitHubSim, headers: dict[str, str], name: str, scope: str = "orgs/acme") -> Any:
    return requests.post(
        f"{sim.url}/{scope}/actions/runners/generate-jitconfig",
        headers=headers,
        json={"name": name, "labels": ["self-hosted", "linux"], "runner_group_id": 1},
        timeout=5,
    )


def test_installation_token_needs_a_jwt_signed_by_the_app_key(sim: GitHubSim) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    url = f"{sim.url}/app/installations/{sim.installation_id}/access_tokens"
    for bad in (app_jwt(sim, key=other), app_jwt(sim, iss="1"), "not-a-jwt"):
        answer = requests.post(url, headers={"Authorization": f"Bearer {bad}"}, timeout=5)
        assert answer.status_code == 401
    assert requests.post(url, timeout=5).status_code == 401
    assert token(sim)["Authorization"].startswith("token ghs_")


def test_expired_installation_token_is_refused() -> None:
    with GitHubSim(token_ttl_s=0) as sim:
        answer = jit(sim, token(sim), "i-1")
    assert answer.status_code == 401


def test_jitconfig_needs_runner_group_and_names_are_unique_per_scope(sim: GitHubSim) -> None:
    headers = token(sim)
    no_group = requests.post(
        f"{sim.url}/orgs/acme/actions/runners/generate-jitconfig",
        headers=headers,
        json={"name": "i-1", "labels": ["self-hosted"]},
        timeout=5,
    )
    assert no_group.status_code == 422
    first = jit(sim, headers, "i-1")
    assert first.status_code == 201
    assert first.json()["runner"]["name"] == "i-1"
    assert jit(sim, headers, "i-1").status_code == 409
    assert jit(sim, headers, "i-1", scope="repos/acme/widgets").status_code == 201
    assert jit(sim, headers, "i-2", scope="orgs/someone-else").status_code == 404
    decoded = json.loads(base64.b64decode(first.json()["encoded_jit_config"]))
    assert decoded["runner_id"] == first.json()["runner"]["id"]
    assert first.json()["encoded_jit_config"] in sim.issued_secrets


def test_runners_list_filters_by_name_and_paginates_with_link(sim: GitHubSim) -> None:
    headers = token(sim)
    for index in range(5):
        assert jit(sim, headers, f"i-{index}").status_code == 201
    url = f"{sim.url}/orgs/acme/actions/runners?per_page=2"
    names: list[str] = []
    pages = 0
    while url:
        answer = requests.get(url, headers=headers, timeout=5)
        assert answer.status_code == 200
        assert answer.json()["total_count"] == 5
        names += [r["name"] for r in answer.json()["runners"]]
        url = answer.links.get("next", {}).get("url")
        pages += 1
    assert (pages, sorted(names)) == (3, [f"i-{i}" for i in range(5)])
    one = requests.get(f"{sim.url}/orgs/acme/actions/runners?name=i-3", headers=headers, timeout=5)
    [runner] = one.json()["runners"]
    gone = requests.delete(
        f"{sim.url}/orgs/acme/actions/runners/{runner['id']}", headers=headers, timeout=5
    )
    assert gone.status_code == 204
    again = requests.delete(
        f"{sim.url}/orgs/acme/actions/runners/{runner['id']}", headers=headers, timeout=5
    )
    assert again.status_code == 404


def _connect(sim: GitHubSim, encoded: str) -> tuple[dict[str, Any], int]:
    config = json.loads(base64.b64decode(encoded))
    identity = {"runner_id": config["runner_id"], "secret": config["secret"]}
    answer = requests.post(f"{sim.url}/_sim/runner/connect", json=identity, timeout=5)
    return identity, answer.status_code


def test_a_jit_runner_takes_one_matching_job_and_connects_once(sim: GitHubSim) -> None:
    headers = token(sim)
    other = sim.queue_job("acme/widgets", ["self-hosted", "gpu"])
    job = sim.queue_job("acme/widgets", ["self-hosted", "LINUX"])
    encoded = jit(sim, headers, "i-1").json()["encoded_jit_config"]
    identity, status = _connect(sim, encoded)
    assert status == 200
    assert _connect(sim, encoded)[1] == 409
    polled = requests.post(f"{sim.url}/_sim/runner/poll", json=identity, timeout=5).json()
    assert polled["job"]["id"] == job.id
    status = requests.get(
        f"{sim.url}/repos/acme/widgets/actions/jobs/{job.id}", headers=headers, timeout=5
    ).json()
    assert (status["status"], status["runner_name"]) == ("in_progress", "i-1")
    done = requests.post(
        f"{sim.url}/_sim/runner/complete", json={**identity, "job_id": job.id}, timeout=5
    )
    assert done.status_code == 200
    assert sim.jobs[job.id].conclusion == "success"
    assert sim.jobs[other.id].status == "queued"
    assert sim.runners_left() == []  # ephemeral: removed after its job


def test_deleted_registration_cannot_connect(sim: GitHubSim) -> None:
    headers = token(sim)
    answer = jit(sim, headers, "i-1").json()
    requests.delete(
        f"{sim.url}/orgs/acme/actions/runners/{answer['runner']['id']}", headers=headers, timeout=5
    )
    assert _connect(sim, answer["encoded_jit_config"])[1] == 401


def test_rerun_queues_a_new_attempt_with_a_new_job_id(sim: GitHubSim) -> None:
    headers = token(sim)
    job = sim.queue_job("acme/widgets", ["self-hosted"])
    url = f"{sim.url}/repos/acme/widgets/actions/jobs/{job.id}/rerun"
    assert requests.post(url, headers=headers, timeout=5).status_code == 403  # not complete yet
    job.status, job.conclusion = "completed", "failure"
    assert requests.post(url, headers=headers, timeout=5).status_code == 201
    [first, second] = sim.logical_jobs()[job.key]
    assert second.id != first.id
    assert (second.run_id, second.run_attempt, second.status) == (job.run_id, 2, "queued")


def test_runs_by_status_paginate_and_list_the_latest_execution_of_each_job(sim: GitHubSim) -> None:
    headers = token(sim)
    labels = ["self-hosted", "linux"]
    both = [sim.queue_job("acme/app", labels, name=n, run_id=11) for n in ("a", "b")]
    running, behind = (sim.queue_job("acme/app", labels, name=n, run_id=12) for n in ("a", "b"))
    running.status = "in_progress"
    sim.queue_job("acme/app", labels, run_id=13).status = "waiting"
    done = sim.queue_job("acme/app", labels, run_id=14)
    done.status, done.conclusion = "completed", "failure"
    sim.queue_job("acme/other", labels, run_id=15)
    runs_url = f"{sim.url}/repos/acme/app/actions/runs"

    def statuses(**params: str) -> dict[int, str]:
        answer = requests.get(runs_url, headers=headers, params=params, timeout=5)
        assert answer.status_code == 200
        return {r["id"]: r["status"] for r in answer.json()["workflow_runs"]}

    assert statuses(status="queued") == {11: "queued"}
    assert statuses(status="in_progress") == {12: "in_progress"}
    assert statuses(status="waiting") == {13: "waiting"}
    assert statuses(status="failure") == {14: "completed"}  # a conclusion filters too
    # Newest first, pages linked; the next link keeps the filter.
    url: str | None = f"{runs_url}?per_page=3"
    seen: list[int] = []
    while url:
        answer = requests.get(url, headers=headers, timeout=5)
        assert answer.json()["total_count"] == 4
        seen += [r["id"] for r in answer.json()["workflow_runs"]]
        url = answer.links.get("next", {}).get("url")
    assert seen == [14, 13, 12, 11]
    [run] = requests.get(runs_url, headers=headers, params={"status": "queued"}, timeout=5).json()[
        "workflow_runs"
    ]
    assert run["repository"]["full_name"] == "acme/app"
    assert run["repository"]["private"] is True

    jobs = requests.get(f"{runs_url}/12/jobs", headers=headers, timeout=5).json()
    assert {(j["id"], j["status"]) for j in jobs["jobs"]} == {
        (running.id, "in_progress"),
        (behind.id, "queued"),
    }
    assert all(j["run_attempt"] == 1 and j["labels"] == labels for j in jobs["jobs"])
    paged = requests.get(f"{runs_url}/11/jobs?per_page=1", headers=headers, timeout=5)
    assert [j["id"] for j in paged.json()["jobs"]] == [both[0].id]
    assert "next" in paged.links
    # A re-run: the latest execution replaces the failed one.
    assert requests.post(
        f"{sim.url}/repos/acme/app/actions/jobs/{done.id}/rerun", headers=headers, timeout=5
    ).ok
    latest = requests.get(f"{runs_url}/14/jobs?filter=latest", headers=headers, timeout=5).json()
    assert [(j["run_attempt"], j["status"]) for j in latest["jobs"]] == [(2, "queued")]
    every = requests.get(f"{runs_url}/14/jobs?filter=all", headers=headers, timeout=5).json()
    assert {j["run_attempt"] for j in every["jobs"]} >= {2}
    assert statuses(status="queued") == {14: "queued", 11: "queued"}

    assert requests.get(f"{runs_url}/999/jobs", headers=headers, timeout=5).status_code == 404
    assert (
        requests.get(f"{runs_url}/11/jobs?filter=x", headers=headers, timeout=5).status_code == 422
    )
    assert requests.get(runs_url, timeout=5).status_code == 401
    other_owner = f"{sim.url}/repos/someone-else/app/actions/runs"
    assert requests.get(other_owner, headers=headers, timeout=5).status_code == 404
    assert sim.calls["GET /repos/{repo}/actions/runs"] >= 7
    assert sim.calls["GET /repos/{repo}/actions/runs/{id}/jobs"] == 6
    sim.faults.github_5xx = 1.0
    assert requests.get(runs_url, headers=headers, timeout=5).status_code == 502


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []
    status = 202

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


def _receiver(status: int) -> tuple[ThreadingHTTPServer, type[_Receiver]]:
    handler = type("Receiver", (_Receiver,), {"received": [], "status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


def test_webhooks_are_signed_with_real_headers_and_failures_are_listed() -> None:
    server, handler = _receiver(503)
    url = f"http://127.0.0.1:{server.server_address[1]}/webhook"
    with GitHubSim(webhook_url=url) as sim:
        sim.queue_job("acme/widgets", ["self-hosted"])
        assert sim.wait_webhooks_sent()
        [(headers, body)] = handler.received
        expected = (
            "sha256=" + hmac.new(sim.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
        )
        assert headers["X-Hub-Signature-256"] == expected
        assert headers["X-GitHub-Event"] == "workflow_job"
        assert headers["User-Agent"].startswith("GitHub-Hookshot/")
        assert json.loads(body)["action"] == "queued"
        auth = {"Authorization": f"Bearer {app_jwt(sim)}"}
        [delivery] = requests.get(f"{sim.url}/app/hook/deliveries", headers=auth, timeout=5).json()
        assert (delivery["guid"], delivery["status_code"]) == (headers["X-GitHub-Delivery"], 503)
        handler.status = 202
        answer = requests.post(
            f"{sim.url}/app/hook/deliveries/{delivery['id']}/attempts", headers=auth, timeout=5
        )
        assert answer.status_code == 202
        assert sim.wait_webhooks_sent()
        assert len(handler.received) == 2
        assert sim.failed_deliveries() == []
    server.shutdown()


def test_deliveries_use_cursor_pagination() -> None:
    with GitHubSim() as sim:
        for _ in range(5):
            sim.queue_job("acme/widgets", ["self-hosted"])
        assert sim.wait_webhooks_sent()
        auth = {"Authorization": f"Bearer {app_jwt(sim)}"}
        url = f"{sim.url}/app/hook/deliveries?per_page=2"
        seen: list[int] = []
        while url:
            answer = requests.get(url, headers=auth, timeout=5)
            seen += [d["id"] for d in answer.json()]
            url = answer.links.get("next", {}).get("url")
            if url:
                assert "cursor=" in url
    assert len(seen) == len(set(seen)) == 5


def test_faults_are_seeded_and_rate_limits_carry_retry_after() -> None:
    def statuses(seed: int) -> list[int]:
        with GitHubSim(seed=seed, faults=Faults(github_5xx=0.3, github_rate_limit=0.3)) as sim:
            auth = {"Authorization": f"Bearer {app_jwt(sim)}"}
            answers = [
                requests.get(f"{sim.url}/app/installations", headers=auth, timeout=5)
                for _ in range(30)
            ]
            limited = [a for a in answers if a.status_code == 403]
            assert all(a.headers["Retry-After"] == "1" for a in limited)
            return [a.status_code for a in answers]

    first = statuses(3)
    assert first == statuses(3)
    assert {200, 403, 502} <= set(first)


def test_lost_and_duplicate_webhooks() -> None:
    server, handler = _receiver(202)
    url = f"http://127.0.0.1:{server.server_address[1]}/webhook"
    with GitHubSim(webhook_url=url, faults=Faults(lost_webhooks=1.0)) as sim:
        sim.queue_job("acme/widgets", ["self-hosted"])
        assert sim.wait_webhooks_sent()
        assert handler.received == []
        [lost] = sim.failed_deliveries()
        assert lost.status_code == 0
    with GitHubSim(webhook_url=url, faults=Faults(duplicate_webhooks=1.0)) as sim:
        sim.queue_job("acme/widgets", ["self-hosted"])
        assert sim.wait_webhooks_sent()
    first, second = handler.received
    assert first[0]["X-GitHub-Delivery"] == second[0]["X-GitHub-Delivery"]
    server.shutdown()


def test_runner_groups_are_safe_unless_configured_otherwise(sim: GitHubSim) -> None:
    headers = token(sim)

    def group(group_id: int) -> requests.Response:
        return requests.get(
            f"{sim.url}/orgs/acme/actions/runner-groups/{group_id}", headers=headers, timeout=5
        )

    safe = group(1).json()
    assert (safe["visibility"], safe["allows_public_repositories"]) == ("selected", False)
    sim.set_runner_group(2, visibility="all", allows_public_repositories=True)
    sim.set_runner_group(3, exists=False)
    unsafe = group(2).json()
    assert (unsafe["visibility"], unsafe["allows_public_repositories"]) == ("all", True)
    assert group(3).status_code == 404
    assert (
        requests.get(
            f"{sim.url}/orgs/other/actions/runner-groups/1", headers=headers, timeout=5
        ).status_code
        == 404
    )  # not an org the App is installed in
