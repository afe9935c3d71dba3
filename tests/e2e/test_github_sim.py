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

from devstack.github_sim import ApiError, Faults, GitHubSim, JobTimings
from tests.e2e.conftest import until

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


def test_rerun_queues_the_next_attempt_under_the_same_job_id(sim: GitHubSim) -> None:
    headers = token(sim)
    job = sim.queue_job("acme/widgets", ["self-hosted"])
    url = f"{sim.url}/repos/acme/widgets/actions/jobs/{job.id}/rerun"
    assert requests.post(url, headers=headers, timeout=5).status_code == 403  # not complete yet
    job.status, job.conclusion = "completed", "failure"
    assert requests.post(url, headers=headers, timeout=5).status_code == 201
    assert requests.post(url, headers=headers, timeout=5).status_code == 403  # re-running now
    [first, second] = sim.logical_jobs()[job.key]
    assert second.id == first.id == job.id
    assert (second.run_id, second.run_attempt, second.status) == (job.run_id, 2, "queued")
    assert sim.jobs[job.id] is second
    latest = requests.get(
        f"{sim.url}/repos/acme/widgets/actions/jobs/{job.id}", headers=headers, timeout=5
    ).json()
    assert (latest["id"], latest["run_attempt"], latest["status"]) == (job.id, 2, "queued")
    assert sim.job_outcome(job.key) == "queued"


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
    assert seen == sorted(seen, reverse=True)  # newest first, page after page
    # A delivery is found by id for a redelivery, the oldest as the newest.
    with GitHubSim() as sim:
        for _ in range(3):
            sim.queue_job("acme/widgets", ["self-hosted"])
        assert sim.wait_webhooks_sent()
        first, *_, last = (d.id for d in sim.deliveries)
        assert sim.redeliver(first).guid == sim.deliveries[0].guid
        assert sim.redeliver(last).guid == sim.deliveries[2].guid
        with pytest.raises(ApiError):
            sim.redeliver(last + 1000)


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


# ---------------------------------------------------------------------- job-level behaviour
FAST = JobTimings(
    cancel_queued_s=0.05,
    cancel_booting_s=0.3,
    cancel_running_s=0.05,
    waiting_after_s=0.05,
    approval_short_s=0.3,
    approval_long_s=0.6,
    rerun_after_s=0.05,
)


def runner(
    sim: GitHubSim,
    name: str,
    labels: tuple[str, ...] = ("self-hosted", "linux"),
    scope: str = "orgs/acme",
) -> dict[str, Any]:
    """A connected JIT runner's identity (as the fake runner holds it)."""
    answer = requests.post(
        f"{sim.url}/{scope}/actions/runners/generate-jitconfig",
        headers=token(sim),
        json={"name": name, "labels": list(labels), "runner_group_id": 1},
        timeout=5,
    )
    identity, status = _connect(sim, answer.json()["encoded_jit_config"])
    assert status == 200
    return identity


def poll(sim: GitHubSim, identity: dict[str, Any]) -> dict[str, Any] | None:
    answer = requests.post(f"{sim.url}/_sim/runner/poll", json=identity, timeout=5)
    assert answer.status_code in (200, 204)
    return answer.json() if answer.status_code == 200 else None


def complete(sim: GitHubSim, identity: dict[str, Any], job_id: int) -> int:
    return requests.post(
        f"{sim.url}/_sim/runner/complete",
        json={**identity, "job_id": job_id, "conclusion": "success"},
        timeout=5,
    ).status_code


def hooks(handler: type[_Receiver]) -> list[tuple[str, str, int, int, str]]:
    """(delivery guid, action, job id, run attempt, status) of every webhook received."""
    found = []
    for headers, body in handler.received:
        payload = json.loads(body)
        job = payload["workflow_job"]
        found.append(
            (headers["X-GitHub-Delivery"], payload["action"], job["id"], job["run_attempt"],
             job["status"])
        )  # fmt: skip
    return found


def test_approval_queues_then_waits_then_queues_the_same_job_again() -> None:
    server, handler = _receiver(202)
    url = f"http://127.0.0.1:{server.server_address[1]}/webhook"
    with GitHubSim(webhook_url=url, faults=Faults(approval=1.0), timings=FAST) as sim:
        idle = runner(sim, "i-1")
        job = sim.queue_job("acme/widgets", ["self-hosted", "linux"])
        assert poll(sim, idle) is None  # queued, but held until the protection rules ran
        assert until(lambda: sim.jobs[job.id].status == "waiting", 5)
        assert poll(sim, idle) is None
        assert sim.job_outcome(job.key) == "waiting"
        assert until(lambda: sim.jobs[job.id].status == "queued", 5)
        taken = poll(sim, idle)
        assert taken is not None
        assert taken["job"]["id"] == job.id
        assert sim.wait_webhooks_sent()
    server.shutdown()
    seen = hooks(handler)
    assert [(a, i, s) for _, a, i, _, s in seen] == [
        ("queued", job.id, "queued"),
        ("waiting", job.id, "waiting"),
        ("queued", job.id, "queued"),
        ("in_progress", job.id, "in_progress"),
    ]
    assert len({guid for guid, *_ in seen}) == 4  # every delivery its own guid
    assert sim.counters["jobs_waiting"] == sim.counters["jobs_approved"] == 1
    assert sim.counters["approvals_long"] + sim.counters["approvals_short"] == 1


def test_approval_delays_are_short_for_some_jobs_and_long_for_others() -> None:
    sim = GitHubSim(seed=5, faults=Faults(approval=1.0), timings=JobTimings(approval_long_s=30))
    delays = [sim._draw_plan(f"acme/widgets#{n}/build").approval_s for n in range(20)]
    assert all(d is not None for d in delays)
    assert any(d is not None and d > 20 for d in delays)
    assert any(d is not None and d < 2 for d in delays)


def test_a_user_rerun_queues_the_next_attempt_under_the_same_job_id() -> None:
    with GitHubSim(faults=Faults(rerun=1.0), timings=FAST) as sim:
        job = sim.queue_job("acme/widgets", ["self-hosted", "linux"])
        first = runner(sim, "i-1")
        assert poll(sim, first) is not None
        assert complete(sim, first, job.id) == 200
        assert sim.job_outcome(job.key) == "pending"  # the re-run is still to come
        assert until(lambda: sim.jobs[job.id].run_attempt == 2, 5)
        again = sim.jobs[job.id]
        assert (again.id, again.run_id, again.status) == (job.id, job.run_id, "queued")
        assert sim.job_outcome(job.key) == "queued"
        second = runner(sim, "i-2")
        taken = poll(sim, second)
        assert taken is not None
        assert taken["job"]["run_attempt"] == 2
        assert complete(sim, second, job.id) == 200
        time.sleep(0.3)  # once only: no third attempt
        assert [j.run_attempt for j in sim.logical_jobs()[job.key]] == [1, 2]
        assert sim.job_outcome(job.key) == "success"
        assert sim.counters["user_reruns"] == 1


def test_a_spot_rerun_of_a_lost_attempt_keeps_the_job_id(sim: GitHubSim) -> None:
    """A runner lost mid-job fails that attempt only: the next attempt's runner completes it."""
    job = sim.queue_job("acme/widgets", ["self-hosted", "linux"])
    lost = runner(sim, "i-1")
    assert poll(sim, lost) is not None
    requests.post(f"{sim.url}/_sim/runner/disconnect", json=lost, timeout=5)
    assert sim.jobs[job.id].conclusion == "failure"
    sim.rerun_job("acme/widgets", job.id)
    other = runner(sim, "i-2")
    assert poll(sim, other) is not None
    assert complete(sim, other, job.id) == 200
    [one, two] = sim.logical_jobs()[job.key]
    assert (one.conclusion, two.conclusion, two.runner_name) == ("failure", "success", "i-2")


def test_cancel_before_any_runner_completes_it_with_no_runner() -> None:
    server, handler = _receiver(202)
    url = f"http://127.0.0.1:{server.server_address[1]}/webhook"
    with GitHubSim(webhook_url=url) as sim:
        job = sim.queue_job("acme/widgets", ["self-hosted", "linux"])
        waiting = runner(sim, "i-1")
        assert sim.cancel_job(job.id, "queued") is job
        assert poll(sim, waiting) is None  # a runner launched for it simply gets no job
        assert sim.wait_webhooks_sent()
    server.shutdown()
    body = json.loads(handler.received[-1][1])
    assert body["action"] == "completed"
    assert body["workflow_job"]["conclusion"] == "cancelled"
    assert body["workflow_job"]["runner_name"] is None
    assert sim.job_outcome(job.key) == "cancelled"
    assert sim.counters["cancelled_queued"] == 1


def test_cancel_while_running_lets_the_runner_end_it_as_cancelled(sim: GitHubSim) -> None:
    job = sim.queue_job("acme/widgets", ["self-hosted", "linux"])
    busy = runner(sim, "i-1")
    assert poll(sim, busy) == {"job": sim.jobs[job.id].api(), "cancelled": False}
    sim.cancel_job(job.id, "running")
    assert sim.jobs[job.id].status == "in_progress"  # until the runner reports
    answer = poll(sim, busy)
    assert answer is not None
    assert answer["cancelled"] is True
    assert complete(sim, busy, job.id) == 200  # not an error: the runner exits 0
    assert (sim.jobs[job.id].status, sim.jobs[job.id].conclusion) == ("completed", "cancelled")
    assert sim.jobs[job.id].runner_name == "i-1"
    assert sim.runners_left() == []
    assert sim.counters["cancelled_running"] == 1


def test_planned_cancels_cover_every_stage_and_happen_by_themselves() -> None:
    with GitHubSim(seed=3, faults=Faults(cancel=1.0), timings=FAST) as sim:
        jobs = [sim.queue_job("acme/widgets", ["self-hosted", "linux"]) for _ in range(12)]
        stages = {sim.plans[j.key].cancel for j in jobs}
        assert stages == {"queued", "booting", "running"}
        running = [j for j in jobs if sim.plans[j.key].cancel == "running"]
        runners = [runner(sim, f"i-{n}") for n in range(len(running))]
        assert until(lambda: all(j.status != "queued" or j in running for j in jobs), 5)
        for identity in runners:
            assert poll(sim, identity) is not None
        assert until(lambda: all(j.cancel_requested or j.status == "completed" for j in jobs), 5)
        for identity in runners:
            taken = poll(sim, identity)
            assert taken is not None
            assert complete(sim, identity, taken["job"]["id"]) == 200
    assert {sim.job_outcome(j.key) for j in jobs} == {"cancelled"}
    assert sim.counters["cancelled_queued"] + sim.counters["cancelled_booting"] > 0
    assert sim.counters["cancelled_running"] == len(running)


def test_steal_hands_a_runner_a_job_other_than_its_own() -> None:
    def taken(steal: float, knows_own: bool) -> tuple[str, int]:
        with GitHubSim(faults=Faults(steal=steal)) as sim:
            own = sim.queue_job("acme/widgets", ["self-hosted", "linux"])
            other = sim.queue_job("acme/gadgets", ["self-hosted", "linux"])
            sim.launched_for = lambda name: own.id if knows_own and name == "i-1" else None
            answer = poll(sim, runner(sim, "i-1"))
            assert answer is not None
            which = {own.id: "own", other.id: "other"}[answer["job"]["id"]]
            if which == "other":
                assert sim.jobs[other.id].stolen_from == own.id
            return which, sim.counters["steals"]

    assert taken(1.0, knows_own=True) == ("other", 1)
    assert taken(0.0, knows_own=True) == ("own", 0)  # the oldest, its own
    assert taken(1.0, knows_own=False) == ("own", 0)  # launched for nothing known: no bias


def test_runners_take_jobs_in_the_order_queued_past_those_taken_and_held(sim: GitHubSim) -> None:
    """A poll skips the jobs already taken (it no longer reads them all); a job held for
    approval does not stop the ones behind it, and once approved keeps its place."""
    labels = ["self-hosted", "linux"]
    first, held, third = (sim.queue_job("acme/widgets", labels) for _ in range(3))
    held.status = "waiting"

    def takes(name: str) -> int:
        taken = poll(sim, runner(sim, name))
        assert taken is not None
        return int(taken["job"]["id"])

    assert takes("i-1") == first.id
    assert takes("i-2") == third.id
    assert poll(sim, runner(sim, "i-3")) is None
    held.status = "queued"  # approved
    fourth = sim.queue_job("acme/widgets", labels)
    assert takes("i-4") == held.id
    assert takes("i-5") == fourth.id


def test_a_repository_runner_takes_only_its_repositorys_jobs(sim: GitHubSim) -> None:
    theirs = sim.queue_job("acme/gadgets", ["self-hosted", "linux"])
    ours = sim.queue_job("acme/widgets", ["self-hosted", "linux"])
    repo_runner = runner(sim, "i-1", ("self-hosted", "linux", "arm64"), "repos/acme/widgets")
    taken = poll(sim, repo_runner)
    assert taken is not None
    assert taken["job"]["id"] == ours.id
    org_runner = runner(sim, "i-2", ("self-hosted", "linux", "arm64"))
    taken = poll(sim, org_runner)
    assert taken is not None
    assert taken["job"]["id"] == theirs.id


def test_job_plans_are_seeded_per_job_key() -> None:
    faults = Faults(cancel=0.5, approval=0.5, rerun=0.5)
    keys = [f"acme/widgets#{n}/build" for n in range(30)]

    def plans(seed: int, order: list[str]) -> dict[str, Any]:
        sim = GitHubSim(seed=seed, faults=faults)
        return {key: sim._draw_plan(key) for key in order}

    assert plans(1, keys) == plans(1, list(reversed(keys)))
    assert plans(1, keys) != plans(2, keys)
    drawn = plans(1, keys).values()
    assert {p.cancel for p in drawn} >= {None, "queued", "booting", "running"}
    assert {p.rerun for p in drawn} == {True, False}
    # Adding a fault does not move another's choices.
    alone = GitHubSim(seed=1, faults=Faults(cancel=0.5))
    assert [alone._draw_plan(k).cancel for k in keys] == [plans(1, keys)[k].cancel for k in keys]
