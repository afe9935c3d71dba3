"""A GitHub simulator on 127.0.0.1: the REST API jitrunners calls, and GitHub's own behaviour.

REST (docs/contracts.md "GitHub adapter"): App JWT -> installation tokens, generate-jitconfig (org
and repo scope), runners list/get/delete, job status, job re-run, webhook deliveries and redelivery,
a repository's workflow runs by status and a run's jobs (both derived from the jobs).
GitHub itself: it queues jobs, sends signed `workflow_job` webhooks (queued, in_progress, completed)
and hands a queued job whose labels match to a JIT runner that connects, at most one job per runner.
The simulated Actions runner (devstack/fake_runner) talks to it under `/_sim/runner/`.

Faults (seeded): `github_5xx` and `github_rate_limit` (fractions of REST calls answered 502 or 403
secondary rate limit with Retry-After), `lost_webhooks` (delivery recorded as failed, not sent),
`duplicate_webhooks` (delivery sent twice under one guid).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import itertools
import json
import queue
import random
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

API_VERSION = "2022-11-28"
HOOKSHOT_AGENT = "GitHub-Hookshot/sim"


def _now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


@dataclass
class SimRunner:
    id: int
    name: str
    labels: tuple[str, ...]
    scope: str  # "orgs/<owner>" or "repos/<owner>/<repo>"
    group_id: int
    secret: str = field(repr=False)
    status: str = "offline"
    busy: bool = False
    connected: bool = False  # a JIT registration connects once
    job_id: int | None = None

    def api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "os": "Linux",
            "status": self.status,
            "busy": self.busy,
            "ephemeral": True,
            "runner_group_id": self.group_id,
            "labels": [
                {"id": i + 1, "name": n, "type": "custom"} for i, n in enumerate(self.labels)
            ],
        }


@dataclass
class SimJob:
    id: int
    run_id: int
    run_attempt: int
    repo: str
    labels: tuple[str, ...]
    name: str
    key: str  # the logical job (run + name): re-runs share it
    status: str = "queued"
    conclusion: str | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    created_at: str = field(default_factory=_now_iso)

    def api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "run_attempt": self.run_attempt,
            "name": self.name,
            "status": self.status,
            "conclusion": self.conclusion,
            "labels": list(self.labels),
            "runner_id": self.runner_id,
            "runner_name": self.runner_name,
            "created_at": self.created_at,
            "html_url": f"https://github.sim/{self.repo}/actions/runs/{self.run_id}/job/{self.id}",
        }


@dataclass
class SimDelivery:
    id: int
    guid: str
    event: str
    action: str | None
    installation_id: int | None
    body: bytes = field(repr=False)
    redelivery: bool = False
    status_code: int = 0
    status: str = "pending"
    delivered_at: str = field(default_factory=_now_iso)

    def api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": self.delivered_at,
            "redelivery": self.redelivery,
            "duration": 0.01,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": None,
        }


@dataclass
class Faults:
    github_5xx: float = 0.0
    github_rate_limit: float = 0.0
    lost_webhooks: float = 0.0
    duplicate_webhooks: float = 0.0


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class GitHubSim:
    """The simulator's state and behaviour; `start()` serves it on a random loopback port."""

    def __init__(
        self,
        *,
        owner: str = "acme",
        installation_id: int = 99,
        app_id: int = 4711,
        webhook_secret: str | None = None,
        webhook_url: str | None = None,
        faults: Faults | None = None,
        seed: int = 0,
        token_ttl_s: int = 3600,
        page_size_max: int = 100,
        retry_after_s: int = 1,
        webhook_senders: int = 1,
    ) -> None:
        self.app_id = app_id
        self.owner = owner
        self.installations: dict[int, str] = {installation_id: owner}
        self.installation_id = installation_id
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_key_pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self._public_key = self._key.public_key()
        self.webhook_secret = webhook_secret or secrets.token_hex(20)
        self.webhook_url = webhook_url
        self.faults = faults or Faults()
        self.token_ttl_s = token_ttl_s
        self.page_size_max = page_size_max
        self.retry_after_s = retry_after_s
        # Deliveries in flight at once: GitHub sends a burst's webhooks in parallel (and so in no
        # guaranteed order); one sender keeps `make run`'s deliveries in order.
        self.webhook_senders = max(1, webhook_senders)
        # Seeded: the same seed injects the same faults into the same sequence of calls.
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._ids = itertools.count(1000)
        self._run_ids = itertools.count(500)
        self._tokens: dict[str, tuple[int, float]] = {}
        self.pat = "ghp_sim" + secrets.token_hex(16)
        self.runners: dict[int, SimRunner] = {}
        # Runner groups by id: unlisted ids are safe groups (selected repositories, no public
        # ones), so the local stack's templates launch; None answers 404. GitHub's real Default
        # group (id 1) is visible to all repositories: set_runner_group(1, visibility="all").
        self.runner_groups: dict[int, dict[str, Any] | None] = {}
        self.jobs: dict[int, SimJob] = {}
        self.deliveries: list[SimDelivery] = []
        # Every secret handed out (tokens, JIT configs): the secrets scan looks for them.
        self.issued_secrets: list[str] = [self.pat, self.webhook_secret]
        self.calls: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self.max_online_runners = 0
        self._outbox: queue.Queue[SimDelivery | None] = queue.Queue()
        self._senders: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.listeners: list[Callable[[str, SimJob], None]] = []

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> GitHubSim:
        sim = self

        class Handler(_Handler):
            simulator = sim

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="github-sim", daemon=True
        )
        self._thread.start()
        for index in range(self.webhook_senders):
            sender = threading.Thread(
                target=self._send_loop, name=f"github-hooks-{index}", daemon=True
            )
            self._senders.append(sender)
            sender.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for _ in self._senders:
            self._outbox.put(None)
        for sender in self._senders:
            sender.join(timeout=5)

    def __enter__(self) -> GitHubSim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ GitHub's own behaviour
    def queue_job(
        self,
        repo: str,
        labels: Iterable[str],
        *,
        name: str = "build",
        run_id: int | None = None,
        run_attempt: int = 1,
        key: str | None = None,
    ) -> SimJob:
        """A workflow job is queued: GitHub records it and sends the `queued` webhook."""
        with self._lock:
            job = SimJob(
                id=next(self._ids),
                run_id=run_id or next(self._run_ids),
                run_attempt=run_attempt,
                repo=repo,
                labels=tuple(labels),
                name=name,
                key="",
            )
            job.key = key or f"{repo}#{job.run_id}/{name}"
            self.jobs[job.id] = job
            self.counters["jobs_queued"] += 1
        self._notify("queued", job)
        self._emit_job_event("queued", job)
        return job

    def logical_jobs(self) -> dict[str, list[SimJob]]:
        """Attempts per logical job (re-runs share the key), oldest first."""
        with self._lock:
            grouped: dict[str, list[SimJob]] = {}
            for job in sorted(self.jobs.values(), key=lambda j: j.id):
                grouped.setdefault(job.key, []).append(job)
            return grouped

    def job_outcome(self, key: str) -> str:
        """`success` once any attempt succeeded; otherwise the latest attempt's status."""
        attempts = self.logical_jobs().get(key, [])
        if any(j.conclusion == "success" for j in attempts):
            return "success"
        return attempts[-1].status if attempts else "unknown"

    def runners_left(self) -> list[SimRunner]:
        with self._lock:
            return list(self.runners.values())

    def failed_deliveries(self) -> list[SimDelivery]:
        with self._lock:
            ok = {d.guid for d in self.deliveries if 200 <= d.status_code < 300}
            return [d for d in self.deliveries if d.guid not in ok]

    def _notify(self, what: str, job: SimJob) -> None:
        for listener in list(self.listeners):
            listener(what, job)

    def _emit_job_event(self, action: str, job: SimJob) -> None:
        installation = {"id": self.installation_id}
        owner = job.repo.split("/", 1)[0]
        payload = {
            "action": action,
            "workflow_job": {
                **job.api(),
                "status": job.status,
                "head_branch": "main",
                "workflow_name": "ci",
                "steps": [],
            },
            "repository": {
                "id": abs(hash(job.repo)) % 10**8,
                "name": job.repo.split("/", 1)[1],
                "full_name": job.repo,
                "private": True,
                "visibility": "private",
                "owner": {"login": owner, "type": "Organization"},
            },
            "organization": {"login": owner},
            "sender": {"login": "octocat"},
            "installation": installation,
        }
        body = json.dumps(payload, separators=(",", ":")).encode()
        with self._lock:
            delivery = SimDelivery(
                id=next(self._ids),
                guid=str(uuid.uuid4()),
                event="workflow_job",
                action=action,
                installation_id=self.installation_id,
                body=body,
            )
            self.deliveries.append(delivery)
        self._outbox.put(delivery)

    def redeliver(self, delivery_id: int) -> SimDelivery:
        with self._lock:
            original = next((d for d in self.deliveries if d.id == delivery_id), None)
            if original is None:
                raise ApiError(404, "Not Found")
            again = SimDelivery(
                id=next(self._ids),
                guid=original.guid,
                event=original.event,
                action=original.action,
                installation_id=original.installation_id,
                body=original.body,
                redelivery=True,
            )
            self.deliveries.append(again)
            self.counters["redeliveries"] += 1
        self._outbox.put(again)
        return again

    def _send_loop(self) -> None:
        while True:
            delivery = self._outbox.get()
            if delivery is None:
                return
            self._send(delivery)

    def _send(self, delivery: SimDelivery) -> None:
        with self._lock:
            lost = not delivery.redelivery and self._roll(self.faults.lost_webhooks)
            duplicate = self._roll(self.faults.duplicate_webhooks)
        if lost or not self.webhook_url:
            with self._lock:
                delivery.status_code = 0 if lost else 404
                delivery.status = "failed to connect" if lost else "no webhook url"
                delivery.delivered_at = _now_iso()
                self.counters["webhooks_lost" if lost else "webhooks_unsent"] += 1
            return
        # A duplicate is the same delivery (one guid) arriving twice; the record is final only
        # after both, so wait_webhooks_sent() covers the second one too.
        codes = [self._post(delivery) for _ in range(2 if duplicate else 1)]
        code = codes[-1]
        with self._lock:
            delivery.status_code = code
            delivery.status = "OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}"
            delivery.delivered_at = _now_iso()
            self.counters["webhooks_sent"] += len(codes)
            self.counters["webhooks_duplicated"] += len(codes) - 1
            self.counters["webhooks_failed"] += sum(1 for c in codes if not 200 <= c < 300)

    def _post(self, delivery: SimDelivery) -> int:
        signature = (
            "sha256="
            + hmac.new(self.webhook_secret.encode(), delivery.body, hashlib.sha256).hexdigest()
        )
        headers = {
            "Content-Type": "application/json",
            "User-Agent": HOOKSHOT_AGENT,
            "X-GitHub-Event": delivery.event,
            "X-GitHub-Delivery": delivery.guid,
            "X-GitHub-Hook-ID": "1",
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-GitHub-Hook-Installation-Target-ID": str(self.app_id),
            "X-Hub-Signature-256": signature,
        }
        # http.client keeps header names as GitHub spells them (urllib would re-case them).
        target = urlsplit(str(self.webhook_url))
        connection = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=10)
        try:
            connection.request("POST", target.path or "/", body=delivery.body, headers=headers)
            response = connection.getresponse()
            response.read()
            return int(response.status)
        except (OSError, http.client.HTTPException):
            return 0
        finally:
            connection.close()

    def wait_webhooks_sent(self, timeout_s: float = 10.0) -> bool:
        """Wait until every webhook queued so far was delivered or recorded as failed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if all(d.status != "pending" for d in self.deliveries):
                    return True
            time.sleep(0.02)
        return False

    def _roll(self, fraction: float) -> bool:
        return fraction > 0 and self._rng.random() < fraction

    # ------------------------------------------------------------------ the runner side
    def _runner_for(self, body: dict[str, Any]) -> SimRunner:
        runner = self.runners.get(int(body.get("runner_id", 0)))
        if runner is None or not hmac.compare_digest(runner.secret, str(body.get("secret", ""))):
            raise ApiError(401, "unknown or deleted runner registration")
        return runner

    def runner_connect(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            runner = self._runner_for(body)
            if runner.connected:
                raise ApiError(409, "this JIT runner registration was already used")
            runner.connected = True
            runner.status = "online"
            self.counters["runners_connected"] += 1
            online = sum(1 for r in self.runners.values() if r.status == "online")
            self.max_online_runners = max(self.max_online_runners, online)
            return {"runner_id": runner.id, "name": runner.name}

    def runner_poll(self, body: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            runner = self._runner_for(body)
            if runner.status != "online":
                raise ApiError(409, "runner is not connected")
            if runner.job_id is not None:
                return {"job": self.jobs[runner.job_id].api()}
            wanted = {label.casefold() for label in runner.labels}
            for job in sorted(self.jobs.values(), key=lambda j: j.id):
                if job.status == "queued" and {lb.casefold() for lb in job.labels} <= wanted:
                    job.status = "in_progress"
                    job.runner_id = runner.id
                    job.runner_name = runner.name
                    runner.busy = True
                    runner.job_id = job.id
                    self.counters["jobs_assigned"] += 1
                    break
            else:
                return None
        self._notify("in_progress", job)
        self._emit_job_event("in_progress", job)
        return {"job": job.api()}

    def runner_complete(self, body: dict[str, Any]) -> None:
        """The runner finished its job: the job completes and the ephemeral runner is removed."""
        conclusion = str(body.get("conclusion") or "success")
        with self._lock:
            runner = self._runner_for(body)
            job = self.jobs.get(runner.job_id or -1)
            if job is None or job.status != "in_progress":
                raise ApiError(409, "no job in progress on this runner")
            job.status = "completed"
            job.conclusion = conclusion
            self.runners.pop(runner.id, None)
            self.counters[f"jobs_{conclusion}"] += 1
        self._notify("completed", job)
        self._emit_job_event("completed", job)

    def runner_disconnect(self, body: dict[str, Any]) -> None:
        """The runner process went away. A job it was running fails (the runner was lost)."""
        with self._lock:
            runner = self._runner_for(body)
            runner.status = "offline"
            runner.busy = False
            job = self.jobs.get(runner.job_id or -1)
            lost = job is not None and job.status == "in_progress"
            if lost and job is not None:
                job.status = "completed"
                job.conclusion = "failure"
                self.counters["jobs_lost_runner"] += 1
            if runner.job_id is not None:
                # An ephemeral runner that took a job is removed by GitHub afterwards.
                self.runners.pop(runner.id, None)
        if lost and job is not None:
            self._notify("completed", job)
            self._emit_job_event("completed", job)

    # ------------------------------------------------------------------ REST: auth
    def app_auth(self, headers: Any) -> None:
        token = _bearer(headers)
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
                leeway=60,
            )
        except jwt.PyJWTError as exc:
            raise ApiError(401, f"A JSON web token could not be decoded ({exc})") from None
        if str(claims.get("iss")) != str(self.app_id):
            raise ApiError(401, "'Issuer' claim ('iss') must be the app id")
        if int(claims["exp"]) - int(claims["iat"]) > 660:
            raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")

    def installation_auth(self, headers: Any, owner: str) -> None:
        token = _bearer(headers)
        with self._lock:
            if token == self.pat:
                return
            found = self._tokens.get(token)
        if found is None:
            raise ApiError(401, "Bad credentials")
        installation_id, expires = found
        if time.time() >= expires:
            self.counters["expired_tokens_refused"] += 1
            raise ApiError(401, "Bad credentials (token expired)")
        if self.installations.get(installation_id, "").casefold() != owner.casefold():
            raise ApiError(404, "Not Found")

    def issue_token(self, installation_id: int) -> dict[str, Any]:
        if installation_id not in self.installations:
            raise ApiError(404, "Not Found")
        token = "ghs_" + secrets.token_urlsafe(27)
        expires = time.time() + self.token_ttl_s
        with self._lock:
            self._tokens[token] = (installation_id, expires)
            self.issued_secrets.append(token)
            self.counters["tokens_issued"] += 1
        return {"token": token, "expires_at": _now_iso(expires), "permissions": {}}

    # ------------------------------------------------------------------ REST: runners and jobs
    def generate_jitconfig(self, scope: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(422, "Invalid request body")
        name, labels, group = body.get("name"), body.get("labels"), body.get("runner_group_id")
        if not isinstance(name, str) or not name:
            raise ApiError(422, "name is required")
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(x, str) for x in labels)
        ):
            raise ApiError(422, "labels must be a non-empty array of strings")
        if isinstance(group, bool) or not isinstance(group, int):
            raise ApiError(422, "runner_group_id is required")
        with self._lock:
            if any(r.name == name and r.scope == scope for r in self.runners.values()):
                raise ApiError(409, "Already exists - A runner with the same name already exists")
            runner = SimRunner(
                id=next(self._ids),
                name=name,
                labels=tuple(labels),
                scope=scope,
                group_id=group,
                secret=secrets.token_hex(16),
            )
            self.runners[runner.id] = runner
            self.counters["jitconfigs_issued"] += 1
        blob = json.dumps(
            {"url": self.url, "runner_id": runner.id, "name": name, "secret": runner.secret}
        ).encode()
        encoded = base64.b64encode(blob).decode()
        with self._lock:
            self.issued_secrets.append(encoded)
        return {"runner": runner.api(), "encoded_jit_config": encoded}

    def set_runner_group(
        self,
        group_id: int,
        *,
        visibility: str = "selected",
        allows_public_repositories: bool = False,
        exists: bool = True,
    ) -> None:
        with self._lock:
            self.runner_groups[group_id] = (
                {"visibility": visibility, "allows_public_repositories": allows_public_repositories}
                if exists
                else None
            )

    def runner_group(self, group_id: int) -> dict[str, Any]:
        """`GET /orgs/{org}/actions/runner-groups/{id}` (the fields GitHub documents)."""
        with self._lock:
            configured = self.runner_groups.get(group_id, {})
        if configured is None:
            raise ApiError(404, "Not Found")
        return {
            "id": group_id,
            "name": "Default" if group_id == 1 else f"group-{group_id}",
            "default": group_id == 1,
            "visibility": configured.get("visibility", "selected"),
            "allows_public_repositories": configured.get("allows_public_repositories", False),
            "restricted_to_workflows": False,
            "selected_workflows": [],
            "inherited": False,
        }

    def scoped_runners(self, scope: str, name: str | None) -> list[SimRunner]:
        with self._lock:
            found = [r for r in self.runners.values() if r.scope == scope]
        if name is not None:
            found = [r for r in found if r.name == name]
        return sorted(found, key=lambda r: r.id)

    def delete_runner(self, scope: str, runner_id: int) -> None:
        with self._lock:
            runner = self.runners.get(runner_id)
            if runner is None or runner.scope != scope:
                raise ApiError(404, "Not Found")
            if runner.busy:
                raise ApiError(422, f'Bad request - Runner "{runner.name}" is still running a job')
            del self.runners[runner_id]
            self.counters["runners_deleted"] += 1

    def get_job(self, repo: str, job_id: int) -> SimJob:
        job = self.jobs.get(job_id)
        if job is None or job.repo.casefold() != repo.casefold():
            raise ApiError(404, "Not Found")
        return job

    def rerun_job(self, repo: str, job_id: int) -> SimJob:
        job = self.get_job(repo, job_id)
        if job.status != "completed":
            raise ApiError(403, "This job is not complete and cannot be re-run")
        self.counters["reruns"] += 1
        return self.queue_job(
            job.repo,
            job.labels,
            name=job.name,
            run_id=job.run_id,
            run_attempt=job.run_attempt + 1,
            key=job.key,
        )

    def workflow_runs(self, repo: str) -> dict[int, list[SimJob]]:
        """The repository's runs (run id -> the latest execution of each of its jobs), the
        shape `GET .../actions/runs` and `.../runs/{id}/jobs?filter=latest` answer from."""
        with self._lock:
            latest: dict[str, SimJob] = {}
            for job in self.jobs.values():
                if job.repo.casefold() != repo.casefold():
                    continue
                known = latest.get(job.key)
                if known is None or (job.run_attempt, job.id) > (known.run_attempt, known.id):
                    latest[job.key] = job
            runs: dict[int, list[SimJob]] = {}
            for job in sorted(latest.values(), key=lambda j: j.id):
                runs.setdefault(job.run_id, []).append(job)
            return runs

    def fault_for(self, path: str) -> ApiError | None:
        """A fault to answer instead of the real thing, for REST calls only."""
        with self._lock:
            if self._roll(self.faults.github_5xx):
                self.counters["fault_5xx"] += 1
                return ApiError(502, "Server Error")
            if self._roll(self.faults.github_rate_limit):
                self.counters["fault_rate_limited"] += 1
                return ApiError(
                    403,
                    "You have exceeded a secondary rate limit. Please wait a few minutes before "
                    "you try again.",
                    {"Retry-After": str(self.retry_after_s)},
                )
        return None


def _bearer(headers: Any) -> str:
    value = headers.get("Authorization") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() not in ("bearer", "token") or not token:
        raise ApiError(401, "Requires authentication")
    return token.strip()


def _page(items: list[Any], query: dict[str, list[str]], limit: int) -> tuple[list[Any], int, int]:
    try:
        per_page = max(1, min(limit, int(query.get("per_page", ["30"])[0])))
        page = max(1, int(query.get("page", ["1"])[0]))
    except ValueError:
        raise ApiError(422, "per_page and page must be integers") from None
    start = (page - 1) * per_page
    return items[start : start + per_page], page, per_page


def _run_status(jobs: list[SimJob]) -> tuple[str, str | None]:
    """A run's status and conclusion from its jobs' latest executions. GitHub documents the run
    statuses, not this derivation: a job running, or jobs queued after others finished, make it
    `in_progress`; jobs all queued `queued`; otherwise a job waiting (for an approval) `waiting`."""
    statuses = {j.status for j in jobs}
    if statuses <= {"completed"}:
        conclusions = {j.conclusion for j in jobs}
        for conclusion in ("failure", "cancelled", "timed_out"):
            if conclusion in conclusions:
                return "completed", conclusion
        return "completed", "success"
    if "in_progress" in statuses:
        return "in_progress", None
    if "queued" in statuses:
        return ("in_progress" if "completed" in statuses else "queued"), None
    if "waiting" in statuses:
        return "waiting", None
    return "in_progress", None


def _run_api(run_id: int, jobs: list[SimJob], url: str) -> dict[str, Any]:
    status, conclusion = _run_status(jobs)
    repo = jobs[0].repo
    owner = repo.split("/", 1)[0]
    latest = max(j.run_attempt for j in jobs)
    return {
        "id": run_id,
        "name": "ci",
        "run_attempt": latest,
        "status": status,
        "conclusion": conclusion,
        "event": "push",
        "head_branch": "main",
        "created_at": min(j.created_at for j in jobs),
        "run_started_at": min(j.created_at for j in jobs if j.run_attempt == latest),
        "updated_at": max(j.created_at for j in jobs),
        "jobs_url": f"{url}/repos/{repo}/actions/runs/{run_id}/jobs",
        "html_url": f"https://github.sim/{repo}/actions/runs/{run_id}",
        "repository": {
            "full_name": repo,
            "name": repo.split("/", 1)[1],
            "private": True,
            "visibility": "private",
            "owner": {"login": owner, "type": "Organization"},
        },
    }


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p), name)
    for m, p, name in [
        ("POST", r"^/app/installations/(\d+)/access_tokens$", "access_tokens"),
        ("GET", r"^/app/installations$", "installations"),
        ("GET", r"^/app/hook/deliveries$", "deliveries"),
        ("GET", r"^/app/hook/deliveries/(\d+)$", "delivery"),
        ("POST", r"^/app/hook/deliveries/(\d+)/attempts$", "redeliver"),
        (
            "POST",
            r"^/(orgs/[^/]+|repos/[^/]+/[^/]+)/actions/runners/generate-jitconfig$",
            "jitconfig",
        ),
        ("GET", r"^/(orgs/[^/]+|repos/[^/]+/[^/]+)/actions/runners$", "runners"),
        ("GET", r"^/(orgs/[^/]+|repos/[^/]+/[^/]+)/actions/runners/(\d+)$", "runner"),
        ("DELETE", r"^/(orgs/[^/]+|repos/[^/]+/[^/]+)/actions/runners/(\d+)$", "delete_runner"),
        ("GET", r"^/orgs/([^/]+)/actions/runner-groups/(\d+)$", "runner_group"),
        ("GET", r"^/repos/([^/]+/[^/]+)/actions/jobs/(\d+)$", "job"),
        ("POST", r"^/repos/([^/]+/[^/]+)/actions/jobs/(\d+)/rerun$", "rerun"),
        ("GET", r"^/repos/([^/]+/[^/]+)/actions/runs$", "runs"),
        ("GET", r"^/repos/([^/]+/[^/]+)/actions/runs/(\d+)/jobs$", "run_jobs"),
        ("POST", r"^/_sim/runner/(connect|poll|complete|disconnect)$", "sim_runner"),
        ("POST", r"^/_sim/jobs$", "sim_queue_job"),
        ("GET", r"^/_sim/state$", "sim_state"),
    ]
]


# Path templates the call counters are keyed by (as in docs/contracts.md).
_TEMPLATES = {
    "access_tokens": "/app/installations/{id}/access_tokens",
    "installations": "/app/installations",
    "deliveries": "/app/hook/deliveries",
    "delivery": "/app/hook/deliveries/{id}",
    "redeliver": "/app/hook/deliveries/{id}/attempts",
    "jitconfig": "/{scope}/actions/runners/generate-jitconfig",
    "runners": "/{scope}/actions/runners",
    "runner": "/{scope}/actions/runners/{id}",
    "delete_runner": "/{scope}/actions/runners/{id}",
    "runner_group": "/orgs/{org}/actions/runner-groups/{id}",
    "job": "/repos/{repo}/actions/jobs/{id}",
    "rerun": "/repos/{repo}/actions/jobs/{id}/rerun",
    "runs": "/repos/{repo}/actions/runs",
    "run_jobs": "/repos/{repo}/actions/runs/{id}/jobs",
}


class _Handler(BaseHTTPRequestHandler):
    simulator: GitHubSim
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com-sim"
    # Headers and body are two writes: with Nagle's algorithm the body waits for the client's
    # delayed ACK, 40 ms per call on loopback (the API's own latency is about 1 ms).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: the demo prints its own progress

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path, query = split.path.rstrip("/") or "/", parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        sim = self.simulator
        for route_method, pattern, route in _ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                name = route
                break
        else:
            self._json(404, {"message": "Not Found"})
            return
        template = _TEMPLATES.get(name, path)
        is_rest = not name.startswith("sim_")
        if is_rest:
            sim.calls[f"{method} {template}"] += 1
        try:
            if is_rest and (fault := sim.fault_for(path)) is not None:
                raise fault
            body: Any = json.loads(raw) if raw else {}
            status, answer, headers = getattr(self, f"_r_{name}")(match, query, body)
        except ApiError as exc:
            self._json(exc.status, {"message": exc.message}, exc.headers)
            return
        except (ValueError, KeyError, TypeError) as exc:
            self._json(400, {"message": f"Problems parsing request: {type(exc).__name__}"})
            return
        self._json(status, answer, headers)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-GitHub-Api-Version-Selected", API_VERSION)
        self.send_header("X-RateLimit-Limit", "5000")
        self.send_header("X-RateLimit-Remaining", "4999")
        self.send_header("X-RateLimit-Reset", str(int(time.time()) + 3600))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _link(self, path: str, query: dict[str, list[str]], page: int, per_page: int, more: bool):
        if not more:
            return {}
        params = {k: v[0] for k, v in query.items()}
        params.update(page=str(page + 1), per_page=str(per_page))
        return {"Link": f'<{self.simulator.url}{path}?{urlencode(params)}>; rel="next"'}

    def _owner_of(self, scope: str) -> str:
        return scope.split("/")[1]

    # ---- routes: (match, query, body) -> (status, body, headers)
    def _r_access_tokens(self, m: re.Match[str], q: Any, b: Any):
        self.simulator.app_auth(self.headers)
        return 201, self.simulator.issue_token(int(m.group(1))), {}

    def _r_installations(self, m: re.Match[str], q: Any, b: Any):
        self.simulator.app_auth(self.headers)
        items = [
            {"id": i, "account": {"login": login, "type": "Organization"}, "app_id": 1}
            for i, login in sorted(self.simulator.installations.items())
        ]
        page_items, page, per_page = _page(items, q, self.simulator.page_size_max)
        more = page * per_page < len(items)
        return 200, page_items, self._link("/app/installations", q, page, per_page, more)

    def _r_deliveries(self, m: re.Match[str], q: Any, b: Any):
        sim = self.simulator
        sim.app_auth(self.headers)
        try:
            per_page = max(1, min(sim.page_size_max, int(q.get("per_page", ["30"])[0])))
        except ValueError:
            raise ApiError(422, "per_page must be an integer") from None
        with sim._lock:
            # Newest first, as GitHub lists them; the cursor is the last id seen.
            items = sorted(sim.deliveries, key=lambda d: d.id, reverse=True)
            items = [d for d in items if d.status != "pending"]
        cursor = q.get("cursor", [""])[0]
        if cursor:
            try:
                items = [d for d in items if d.id < int(cursor)]
            except ValueError:
                raise ApiError(422, "invalid cursor") from None
        page_items = items[:per_page]
        headers = {}
        if len(items) > per_page:
            params = {"per_page": str(per_page), "cursor": str(page_items[-1].id)}
            headers["Link"] = f'<{sim.url}/app/hook/deliveries?{urlencode(params)}>; rel="next"'
        return 200, [d.api() for d in page_items], headers

    def _r_delivery(self, m: re.Match[str], q: Any, b: Any):
        sim = self.simulator
        sim.app_auth(self.headers)
        found = next((d for d in sim.deliveries if d.id == int(m.group(1))), None)
        if found is None:
            raise ApiError(404, "Not Found")
        return 200, found.api(), {}

    def _r_redeliver(self, m: re.Match[str], q: Any, b: Any):
        self.simulator.app_auth(self.headers)
        self.simulator.redeliver(int(m.group(1)))
        return 202, {}, {}

    def _r_jitconfig(self, m: re.Match[str], q: Any, b: Any):
        scope = m.group(1)
        self.simulator.installation_auth(self.headers, self._owner_of(scope))
        return 201, self.simulator.generate_jitconfig(scope, b), {}

    def _r_runners(self, m: re.Match[str], q: Any, b: Any):
        scope = m.group(1)
        self.simulator.installation_auth(self.headers, self._owner_of(scope))
        name = q.get("name", [None])[0]
        runners = [r.api() for r in self.simulator.scoped_runners(scope, name)]
        page_items, page, per_page = _page(runners, q, self.simulator.page_size_max)
        more = page * per_page < len(runners)
        headers = self._link(f"/{scope}/actions/runners", q, page, per_page, more)
        return 200, {"total_count": len(runners), "runners": page_items}, headers

    def _r_runner(self, m: re.Match[str], q: Any, b: Any):
        scope = m.group(1)
        self.simulator.installation_auth(self.headers, self._owner_of(scope))
        runner = self.simulator.runners.get(int(m.group(2)))
        if runner is None or runner.scope != scope:
            raise ApiError(404, "Not Found")
        return 200, runner.api(), {}

    def _r_delete_runner(self, m: re.Match[str], q: Any, b: Any):
        scope = m.group(1)
        self.simulator.installation_auth(self.headers, self._owner_of(scope))
        self.simulator.delete_runner(scope, int(m.group(2)))
        return 204, None, {}

    def _r_runner_group(self, m: re.Match[str], q: Any, b: Any):
        self.simulator.installation_auth(self.headers, m.group(1))
        return 200, self.simulator.runner_group(int(m.group(2))), {}

    def _r_job(self, m: re.Match[str], q: Any, b: Any):
        repo = m.group(1)
        self.simulator.installation_auth(self.headers, repo.split("/")[0])
        return 200, self.simulator.get_job(repo, int(m.group(2))).api(), {}

    def _r_rerun(self, m: re.Match[str], q: Any, b: Any):
        repo = m.group(1)
        self.simulator.installation_auth(self.headers, repo.split("/")[0])
        self.simulator.rerun_job(repo, int(m.group(2)))
        return 201, {}, {}

    def _r_runs(self, m: re.Match[str], q: Any, b: Any):
        # Newest first; `status` matches a run's status or its conclusion, as GitHub's does.
        sim, repo = self.simulator, m.group(1)
        sim.installation_auth(self.headers, repo.split("/")[0])
        wanted = q.get("status", [None])[0]
        runs = [
            _run_api(run_id, jobs, sim.url)
            for run_id, jobs in sorted(sim.workflow_runs(repo).items(), reverse=True)
        ]
        if wanted:
            runs = [r for r in runs if wanted in (r["status"], r["conclusion"])]
        page_items, page, per_page = _page(runs, q, sim.page_size_max)
        more = page * per_page < len(runs)
        headers = self._link(f"/repos/{repo}/actions/runs", q, page, per_page, more)
        return 200, {"total_count": len(runs), "workflow_runs": page_items}, headers

    def _r_run_jobs(self, m: re.Match[str], q: Any, b: Any):
        # filter=latest (the default): the latest execution of each job; all: every attempt.
        sim, repo, run_id = self.simulator, m.group(1), int(m.group(2))
        sim.installation_auth(self.headers, repo.split("/")[0])
        which = q.get("filter", ["latest"])[0]
        if which not in ("latest", "all"):
            raise ApiError(422, "filter must be one of: latest, all")
        jobs = sim.workflow_runs(repo).get(run_id)
        if jobs is None:
            raise ApiError(404, "Not Found")
        if which == "all":
            with sim._lock:
                jobs = sorted(
                    (j for j in sim.jobs.values() if j.run_id == run_id and j.repo == jobs[0].repo),
                    key=lambda j: j.id,
                )
        items = [j.api() for j in jobs]
        page_items, page, per_page = _page(items, q, sim.page_size_max)
        more = page * per_page < len(items)
        headers = self._link(f"/repos/{repo}/actions/runs/{run_id}/jobs", q, page, per_page, more)
        return 200, {"total_count": len(items), "jobs": page_items}, headers

    def _r_sim_runner(self, m: re.Match[str], q: Any, b: Any):
        sim = self.simulator
        action = m.group(1)
        if action == "connect":
            return 200, sim.runner_connect(b), {}
        if action == "poll":
            answer = sim.runner_poll(b)
            return (200, answer, {}) if answer else (204, None, {})
        if action == "complete":
            sim.runner_complete(b)
            return 200, {}, {}
        sim.runner_disconnect(b)
        return 200, {}, {}

    def _r_sim_queue_job(self, m: re.Match[str], q: Any, b: Any):
        repo, labels = b.get("repo"), b.get("labels")
        if not isinstance(repo, str) or not isinstance(labels, list):
            raise ApiError(422, "repo and labels are required")
        job = self.simulator.queue_job(repo, labels, name=str(b.get("name") or "build"))
        return 201, job.api(), {}

    def _r_sim_state(self, m: re.Match[str], q: Any, b: Any):
        sim = self.simulator
        with sim._lock:
            return (
                200,
                {
                    "jobs": [j.api() for j in sim.jobs.values()],
                    "runners": [r.api() for r in sim.runners.values()],
                    "counters": dict(sim.counters),
                },
                {},
            )
