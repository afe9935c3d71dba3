"""A GitHub simulator on 127.0.0.1: the REST API jitrunners calls, and GitHub's own behaviour.

REST (docs/contracts.md "GitHub adapter"): App JWT -> installation tokens, generate-jitconfig (org
and repo scope), runners list/get/delete, job status, job re-run, webhook deliveries and redelivery,
a repository's workflow runs by status and a run's jobs (both derived from the jobs), and the
App manifest flow (`jitrunners setup github-app`): the web page that creates an App from a posted
manifest and redirects with a code, and `POST /app-manifests/{code}/conversions`, which answers
this simulator's own App (its id, private key and webhook secret), so the stack keeps working.
More Apps (`add_app`, each with its own key and its own installation on the owner) serve the
spreading of JIT generation over several Apps: an App's JWT reaches its own installations only
(`GET /orgs/{org}/installation`, `GET /repos/{owner}/{repo}/installation`, access tokens).
GitHub itself: it queues jobs, sends signed `workflow_job` webhooks (queued, waiting, in_progress,
completed) and hands a queued job whose labels match to a JIT runner of a scope that admits the
job's repository when it connects, at most one job per runner. The simulated Actions runner
(devstack/fake_runner) talks to it under `/_sim/runner/`.

Jobs: `jobs[id]` is a job's latest attempt; a re-run (REST or a user's) queues the next attempt
under the same job id and run id, `run_attempt` + 1, and every attempt stays in `attempts` (what
`logical_jobs()` and `job_outcome()` read).

Faults (seeded): `github_5xx` and `github_rate_limit` (fractions of REST calls answered 502 or 403
secondary rate limit with Retry-After), `lost_webhooks` (delivery recorded as failed, not sent),
`duplicate_webhooks` (delivery sent twice under one guid). Users acting on jobs, each decided per
logical job from the seed and the job's key (the same seed makes the same choices whatever the
thread timing), at the times of `JobTimings`: `cancel` (cancelled while queued, while its runner
boots, or while running), `approval` (environment protection: queued, then waiting, then queued
again once approved, some approvals quick, some slower than a runner's idle timeout), `rerun` (a
completed job re-run once). `steal`: a runner that polls is handed, with that probability, a
queued job other than the one it was launched for (`launched_for`, a hook the stack provides).
"""

from __future__ import annotations

import base64
import bisect
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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack import loopback
from devstack.quotas import rate_limit
from devstack.wsgi_server import BurstServer

API_VERSION = "2022-11-28"
HOOKSHOT_AGENT = "GitHub-Hookshot/sim"


def _now_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


# Where the simulated GitHub's objects point (GitHub's own answers are full of these URLs).
WEB_URL = "https://github.sim"
API_URL = "https://api.github.sim"
DOCS_URL = "https://docs.github.com/rest"
HEAD_SHA = "d6fde92930d4715a2b49857d24b940956b26d2d3"
# The version a simulated runner reports when it connects (terraform runner_version's default).
RUNNER_VERSION = "2.329.0"


def _node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"0:{kind}{number}".encode()).decode().rstrip("=")


def _number(name: str) -> int:
    """A stable id for a login or repository name (GitHub's ids are positive integers)."""
    return int.from_bytes(hashlib.sha256(name.casefold().encode()).digest()[:4], "big") % 10**8 + 1


def _user(login: str, kind: str = "User") -> dict[str, Any]:
    """A `simple-user` as GitHub answers one (sender, owners, accounts)."""
    number = _number(login)
    url = f"{API_URL}/users/{login}"
    return {
        "login": login,
        "id": number,
        "node_id": _node_id("User" if kind == "User" else "Organization", number),
        "avatar_url": f"https://avatars.github.sim/u/{number}?v=4",
        "gravatar_id": "",
        "url": url,
        "html_url": f"{WEB_URL}/{login}",
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


def _organization(login: str) -> dict[str, Any]:
    """An organization as webhooks carry it (`organization-simple`)."""
    number = _number(login)
    url = f"{API_URL}/orgs/{login}"
    return {
        "login": login,
        "id": number,
        "node_id": _node_id("Organization", number),
        "url": url,
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events",
        "hooks_url": f"{url}/hooks",
        "issues_url": f"{url}/issues",
        "members_url": f"{url}/members{{/member}}",
        "public_members_url": f"{url}/public_members{{/member}}",
        "avatar_url": f"https://avatars.github.sim/u/{number}?v=4",
        "description": None,
    }


def _repository(full_name: str, *, webhook: bool = False) -> dict[str, Any]:
    """A private organization repository: `minimal-repository` (REST) or, with `webhook`, the
    fuller shape webhooks carry."""
    owner, name = full_name.split("/", 1)
    number = _number(full_name)
    url = f"{API_URL}/repos/{full_name}"
    repo: dict[str, Any] = {
        "id": number,
        "node_id": _node_id("Repository", number),
        "name": name,
        "full_name": full_name,
        "private": True,
        "owner": _user(owner, "Organization"),
        "html_url": f"{WEB_URL}/{full_name}",
        "description": None,
        "fork": False,
        "url": url,
        "visibility": "private",
        "git_url": f"git://github.sim/{full_name}.git",
        "ssh_url": f"git@github.sim:{full_name}.git",
    }
    for key, suffix in (
        ("archive_url", "/{archive_format}{/ref}"),
        ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"),
        ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"),
        ("downloads_url", "/downloads"),
        ("events_url", "/events"),
        ("forks_url", "/forks"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("hooks_url", "/hooks"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"),
        ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"),
        ("languages_url", "/languages"),
        ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"),
        ("notifications_url", "/notifications{?since,all,participating}"),
        ("pulls_url", "/pulls{/number}"),
        ("releases_url", "/releases{/id}"),
        ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("tags_url", "/tags"),
        ("teams_url", "/teams"),
        ("trees_url", "/git/trees{/sha}"),
    ):
        repo[key] = url + suffix
    if webhook:
        created = "2024-01-02T03:04:05Z"
        repo.update(
            {
                "created_at": created,
                "updated_at": created,
                "pushed_at": created,
                "clone_url": f"{WEB_URL}/{full_name}.git",
                "svn_url": f"{WEB_URL}/{full_name}",
                "homepage": None,
                "size": 0,
                "stargazers_count": 0,
                "watchers_count": 0,
                "language": None,
                "has_issues": True,
                "has_projects": True,
                "has_downloads": True,
                "has_wiki": True,
                "has_pages": False,
                "has_discussions": False,
                "forks_count": 0,
                "mirror_url": None,
                "archived": False,
                "disabled": False,
                "open_issues_count": 0,
                "license": None,
                "allow_forking": False,
                "is_template": False,
                "web_commit_signoff_required": False,
                "topics": [],
                "forks": 0,
                "open_issues": 0,
                "watchers": 0,
                "default_branch": "main",
                "custom_properties": {},
            }
        )
    return repo


# What the simulated App is granted (its installations and their tokens list these).
INSTALLATION_PERMISSIONS = {
    "actions": "write",
    "metadata": "read",
    "organization_self_hosted_runners": "write",
}


def _installation(installation_id: int, login: str, app_id: int) -> dict[str, Any]:
    """An installation of the App on an organization, as `GET /app/installations` lists it."""
    account = _user(login, "Organization")
    return {
        "id": installation_id,
        "client_id": "Iv1.sim0000000000",
        "account": account,
        "repository_selection": "selected",
        "access_tokens_url": f"{API_URL}/app/installations/{installation_id}/access_tokens",
        "repositories_url": f"{API_URL}/installation/repositories",
        "html_url": f"{WEB_URL}/organizations/{login}/settings/installations/{installation_id}",
        "app_id": app_id,
        "app_slug": "jitrunners",
        "target_id": account["id"],
        "target_type": "Organization",
        "permissions": dict(INSTALLATION_PERMISSIONS),
        "events": ["workflow_job"],
        "created_at": "2024-01-02T03:04:05Z",
        "updated_at": "2024-01-02T03:04:05Z",
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": None,
        "suspended_at": None,
    }


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
    version: str | None = None  # GitHub knows it once the runner connected
    job_id: int | None = None
    job: SimJob | None = field(default=None, repr=False)  # the attempt it took (ids repeat)

    def api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "os": "Linux",
            "status": self.status,
            "busy": self.busy,
            "ephemeral": True,
            "runner_group_id": self.group_id,
            "version": self.version,
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
    # Not GitHub's fields: the simulator's own bookkeeping.
    held: bool = False  # environment protection pending: no runner may take it yet
    cancel_requested: bool = False  # cancelled while running: the runner ends it as cancelled
    stolen_from: int | None = None  # the job its runner was launched for, when `steal` chose it

    started_at: str | None = None
    completed_at: str | None = None
    runner_group_id: int | None = None
    # The simulator's own clock (time.time(), GitHub's fields above are whole seconds): when the
    # attempt was last queued (an approval queues it again) and when a runner took it.
    queued_ts: float = field(default_factory=time.time)
    started_ts: float | None = None

    def api(self) -> dict[str, Any]:
        """The job as `GET .../actions/jobs/{id}` answers it (every field GitHub's description
        requires: tests/e2e/test_github_sim_openapi.py holds it to that)."""
        api = f"{API_URL}/repos/{self.repo}"
        return {
            "id": self.id,
            "run_id": self.run_id,
            "workflow_name": "ci",
            "head_branch": "main",
            "run_url": f"{api}/actions/runs/{self.run_id}",
            "run_attempt": self.run_attempt,
            "node_id": _node_id("CheckRun", self.id),
            "head_sha": HEAD_SHA,
            "url": f"{api}/actions/jobs/{self.id}",
            "html_url": f"{WEB_URL}/{self.repo}/actions/runs/{self.run_id}/job/{self.id}",
            "status": self.status,
            "conclusion": self.conclusion,
            "created_at": self.created_at,
            # GitHub sets started_at when the job is created and again when a runner takes it.
            "started_at": self.started_at or self.created_at,
            "completed_at": self.completed_at,
            "name": self.name,
            "steps": [],
            "check_run_url": f"{api}/check-runs/{self.id}",
            "labels": list(self.labels),
            "runner_id": self.runner_id,
            "runner_name": self.runner_name,
            "runner_group_id": self.runner_group_id,
            "runner_group_name": None
            if self.runner_group_id is None
            else ("Default" if self.runner_group_id == 1 else f"group-{self.runner_group_id}"),
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
            "throttled_at": None,
        }


@dataclass
class SimApp:
    """A GitHub App the simulator knows: its id, RSA key pair and its installation on the owner."""

    app_id: int
    installation_id: int
    private_key_pem: str = field(repr=False)
    public_key: Any = field(repr=False)


def _key_pair() -> tuple[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem, key.public_key()


@dataclass
class Faults:
    github_5xx: float = 0.0
    github_rate_limit: float = 0.0
    lost_webhooks: float = 0.0
    duplicate_webhooks: float = 0.0
    # Users and GitHub acting on jobs (fractions of logical jobs; `steal`: of runner polls).
    cancel: float = 0.0
    approval: float = 0.0
    rerun: float = 0.0
    steal: float = 0.0


@dataclass(frozen=True)
class JobTimings:
    """When the simulated users act, in seconds (each drawn with +-20 % jitter per job).

    The stack fits them to its templates: `approval_long_s` past a runner's boot and idle timeout,
    `approval_short_s` well within it, `cancel_booting_s` while a runner launched for the job boots.
    """

    cancel_queued_s: float = 0.05  # after queued: before any runner could take it
    cancel_booting_s: float = 2.0  # after queued: its runner is booting, the job still queued
    cancel_running_s: float = 0.1  # after in_progress
    waiting_after_s: float = 0.2  # queued -> waiting (environment protection rules evaluated)
    approval_short_s: float = 1.0  # waiting -> queued, quick approvals
    approval_long_s: float = 30.0  # waiting -> queued, slow approvals
    rerun_after_s: float = 0.5  # completed -> re-run by a user


@dataclass(frozen=True)
class JobPlan:
    """What the users will do to one logical job (its first attempt), decided when it is queued."""

    cancel: str | None = None  # "queued", "booting" or "running"
    approval_s: float | None = None  # seconds waiting for approval
    approval_long: bool = False  # approval_s drawn from the long delay
    rerun: bool = False  # re-run once after it first completes (success or cancelled)
    jitter: float = 1.0


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
        timings: JobTimings | None = None,
    ) -> None:
        self.app_id = app_id
        self.owner = owner
        self.installations: dict[int, str] = {installation_id: owner}
        self.installation_id = installation_id
        self.private_key_pem, self._public_key = _key_pair()
        # Every App by id (this one first; add_app adds more); installations of the other Apps
        # by id -> their App (an installation not listed here is this App's).
        self.apps: dict[int, SimApp] = {
            app_id: SimApp(app_id, installation_id, self.private_key_pem, self._public_key)
        }
        self.installation_apps: dict[int, int] = {}
        # JIT configs by the installation whose token asked for them.
        self.jitconfigs_by_installation: Counter[int] = Counter()
        self.webhook_secret = webhook_secret or secrets.token_hex(20)
        self.webhook_url = webhook_url
        self.faults = faults or Faults()
        # GitHub's rate limits (devstack/quotas.py GitHubQuotas), when the stack models quotas.
        self.rate_limits: Any = None
        self.token_ttl_s = token_ttl_s
        self.page_size_max = page_size_max
        self.retry_after_s = retry_after_s
        # Deliveries in flight at once: GitHub sends a burst's webhooks in parallel (and so in no
        # guaranteed order); one sender keeps `make run`'s deliveries in order.
        self.webhook_senders = max(1, webhook_senders)
        # Seeded: the same seed injects the same faults into the same sequence of calls.
        self._rng = random.Random(seed)
        self.seed = seed
        self.timings = timings or JobTimings()
        # Steal rolls come in poll order (thread timing): a sequence of their own.
        self._steal_rng = random.Random(f"{seed}/steal")
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
        self.jobs: dict[int, SimJob] = {}  # job id -> latest attempt
        # (repository, lower case) -> run id -> logical job key -> its latest attempt: what
        # `workflow_runs` answers from, without a pass over every job of a burst per call.
        self._runs: dict[str, dict[int, dict[str, SimJob]]] = {}
        self.attempts: list[SimJob] = []  # every attempt of every job, in the order queued
        self._settled = 0  # attempts before this one are none a runner may take (_takeable)
        self.plans: dict[str, JobPlan] = {}  # logical job key -> what the users do to it
        self._user_pending: Counter[str] = Counter()  # user actions still to come, per key
        self._rerun_keys: set[str] = set()  # logical jobs a user re-ran (once each)
        self._timers: list[threading.Timer] = []
        self._stopped = False
        # Runner name -> the job id its instance was launched for (the stack's hook; None: unknown).
        self.launched_for: Callable[[str], int | None] | None = None
        self.deliveries: list[SimDelivery] = []
        # App manifest flow: codes not yet converted -> (org, manifest); Apps created so far.
        self.manifest_codes: dict[str, tuple[str, dict[str, Any]]] = {}
        self.apps_created: list[dict[str, Any]] = []
        # Every secret handed out (tokens, JIT configs): the secrets scan looks for them.
        self.issued_secrets: list[str] = [self.pat, self.webhook_secret]
        self.calls: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self.max_online_runners = 0
        self._outbox: queue.Queue[SimDelivery | None] = queue.Queue()
        self._senders: list[threading.Thread] = []
        self._server: BurstServer | None = None
        self._thread: threading.Thread | None = None
        self.listeners: list[Callable[[str, SimJob], None]] = []
        # Called with (method, path, status, body) for every REST answer (not /_sim/): the
        # tests hold each one to GitHub's published description.
        self.observers: list[Callable[[str, str, int, Any], None]] = []

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

        self._server = BurstServer(("127.0.0.1", 0), Handler)
        # The process's own clients (the Lambdas' requests, the inline runners) are served in
        # their threads; other processes connect (devstack/loopback.py).
        loopback.register(self._server)
        loopback.install_requests()
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
        with self._lock:
            self._stopped = True
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        if self._server is not None:
            loopback.unregister(self._server)
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
        """A workflow job is queued: GitHub records it and sends the `queued` webhook. The users'
        plan for it (cancel, approval, re-run) is drawn here, from the seed and the job's key."""
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
            plan = self.plans.setdefault(job.key, self._draw_plan(job.key))
            job.held = plan.approval_s is not None
            self.jobs[job.id] = job
            self._index_run(job)
            self.attempts.append(job)
            self.counters["jobs_queued"] += 1
        self._notify("queued", job)
        self._emit_job_event("queued", job)
        self._after_queued(job, plan)
        return job

    def _draw_plan(self, key: str) -> JobPlan:
        """Every draw is made whatever the fractions, so one fault's choices do not move when
        another fault is added."""
        rng = random.Random(f"{self.seed}/{key}")
        cancel_roll, stage_roll, approval_roll, long_roll, rerun_roll = (
            rng.random() for _ in range(5)
        )
        jitter = rng.uniform(0.8, 1.2)
        stages = ("queued", "booting", "running")
        approval_s: float | None = None
        long = long_roll < 0.5
        if approval_roll < self.faults.approval:
            t = self.timings
            approval_s = (t.approval_long_s if long else t.approval_short_s) * jitter
        return JobPlan(
            cancel=stages[int(stage_roll * 3)] if cancel_roll < self.faults.cancel else None,
            approval_s=approval_s,
            approval_long=approval_s is not None and long,
            rerun=rerun_roll < self.faults.rerun,
            jitter=jitter,
        )

    def _after_queued(self, job: SimJob, plan: JobPlan) -> None:
        if job.run_attempt != 1:
            return  # the users act on a job's first attempt
        t = self.timings
        if plan.approval_s is not None:
            self._later(t.waiting_after_s, self._to_waiting, job, key=job.key)
        if plan.cancel == "queued":
            self._later(t.cancel_queued_s * plan.jitter, self.cancel_job, job.id, "queued")
        elif plan.cancel == "booting":
            self._later(t.cancel_booting_s * plan.jitter, self.cancel_job, job.id, "booting")

    def _later(
        self, delay_s: float, action: Callable[..., Any], *args: Any, key: str | None = None
    ) -> None:
        """A user's action after `delay_s`; the `key`'s outcome stays pending until it ran."""

        def fire() -> None:
            try:
                with self._lock:
                    if self._stopped:
                        return
                action(*args)
            finally:
                if key is not None:
                    with self._lock:
                        self._user_pending[key] -= 1

        timer = threading.Timer(max(0.0, delay_s), fire)
        timer.daemon = True
        with self._lock:
            if self._stopped:
                return
            if key is not None:
                self._user_pending[key] += 1
            self._timers.append(timer)
        timer.start()

    def _to_waiting(self, job: SimJob) -> None:
        """Environment protection: the job waits for a reviewer; no runner may take it."""
        with self._lock:
            if job.status != "queued" or self.jobs.get(job.id) is not job:
                return  # cancelled meanwhile
            job.status = "waiting"
            self.counters["jobs_waiting"] += 1
            plan = self.plans[job.key]
            delay = plan.approval_s or 0.0
            self.counters["approvals_long" if plan.approval_long else "approvals_short"] += 1
        self._notify("waiting", job)
        self._emit_job_event("waiting", job)
        self._later(delay, self._approve, job, key=job.key)

    def _approve(self, job: SimJob) -> None:
        """Approved: the same job is queued again (a second `queued` delivery, a new guid)."""
        with self._lock:
            if job.status != "waiting":
                return
            job.status = "queued"
            job.held = False
            job.queued_ts = time.time()
            self.counters["jobs_approved"] += 1
        self._notify("approved", job)
        self._emit_job_event("queued", job)

    def cancel_job(self, job_id: int, stage: str = "api") -> SimJob | None:
        """A user cancels the job's latest attempt. Not started yet (queued or waiting): it
        completes as cancelled at once, with no runner. Running: its runner is told and ends it
        as cancelled (GitHub's completed delivery follows the runner's report)."""
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.status == "completed" or job.cancel_requested:
                return None
            if job.status == "in_progress":
                job.cancel_requested = True
                self.counters["cancelled_running"] += 1
                what = "cancelling"
            else:
                job.status, job.conclusion, job.held = "completed", "cancelled", False
                self.counters[f"cancelled_{stage}"] += 1
                what = "cancelled"
            self.counters["jobs_cancel_requested"] += 1
        self._notify(what, job)
        if what == "cancelled":
            self._completed(job)
        return job

    def _completed(self, job: SimJob) -> None:
        """The `completed` delivery; a user may re-run the job (once, per its plan)."""
        with self._lock:
            job.completed_at = job.completed_at or _now_iso()
        self._notify("completed", job)
        self._emit_job_event("completed", job)
        plan = self.plans.get(job.key)
        if plan is None or not plan.rerun or job.conclusion not in ("success", "cancelled"):
            return
        with self._lock:
            if job.key in self._rerun_keys:
                return
            self._rerun_keys.add(job.key)
        self._later(self.timings.rerun_after_s * plan.jitter, self._user_rerun, job, key=job.key)

    def _user_rerun(self, job: SimJob) -> None:
        if self._queue_attempt(job, before=lambda: self._notify("rerun", job)) is not None:
            with self._lock:
                self.counters["user_reruns"] += 1

    def _queue_attempt(
        self, job: SimJob, before: Callable[[], None] = lambda: None
    ) -> SimJob | None:
        """The next attempt of a job whose latest attempt completed: same job id and run,
        `run_attempt` + 1; None (nothing queued) while the latest attempt is not completed."""
        with self._lock:
            if self.jobs.get(job.id) is not job or job.status != "completed":
                return None
            attempt = 1 + max(a.run_attempt for a in self.attempts if a.run_id == job.run_id)
            again = SimJob(
                id=job.id,
                run_id=job.run_id,
                run_attempt=attempt,
                repo=job.repo,
                labels=job.labels,
                name=job.name,
                key=job.key,
            )
            self.jobs[job.id] = again
            self._index_run(again)
            self.attempts.append(again)
            self.counters["jobs_queued"] += 1
        before()
        self._notify("queued", again)
        self._emit_job_event("queued", again)
        return again

    def logical_jobs(self) -> dict[str, list[SimJob]]:
        """Attempts per logical job (re-runs share the key), oldest first."""
        with self._lock:
            grouped: dict[str, list[SimJob]] = {}
            for job in sorted(self.attempts, key=lambda j: (j.id, j.run_attempt)):
                grouped.setdefault(job.key, []).append(job)
            return grouped

    def job_outcome(self, key: str, attempts: list[SimJob] | None = None) -> str:
        """The latest attempt's conclusion once it completed and no user action on the job is
        still to come (`pending` until then); otherwise its status. `attempts`: the job's, as
        `logical_jobs()` groups them, when the caller has them (each call groups every
        attempt of the run: for all jobs, once)."""
        if attempts is None:
            attempts = self.logical_jobs().get(key, [])
        if not attempts:
            return "unknown"
        with self._lock:
            pending = self._user_pending[key] > 0
        latest = attempts[-1]
        if latest.status != "completed":
            return latest.status
        if pending:
            return "pending"
        return latest.conclusion or "completed"

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
        installation = {
            "id": self.installation_id,
            "node_id": _node_id("Installation", self.installation_id),
        }
        owner = job.repo.split("/", 1)[0]
        payload = {
            "action": action,
            "workflow_job": job.api(),
            "repository": _repository(job.repo, webhook=True),
            "organization": _organization(owner),
            "sender": _user("octocat"),
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
            at = bisect.bisect_left(self.deliveries, delivery_id, key=lambda d: d.id)
            found = at < len(self.deliveries) and self.deliveries[at].id == delivery_id
            original = self.deliveries[at] if found else None
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
        # An API Gateway shim of this process takes the delivery in this thread.
        try:
            answer = loopback.send(str(self.webhook_url), "POST", headers.items(), delivery.body)
        except ConnectionError:
            return 0  # the shim dropped it, as a closed connection
        if answer is not None:
            return answer.status
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
            runner.version = str(body.get("version") or RUNNER_VERSION)
            runner.status = "online"
            self.counters["runners_connected"] += 1
            online = sum(1 for r in self.runners.values() if r.status == "online")
            self.max_online_runners = max(self.max_online_runners, online)
            return {"runner_id": runner.id, "name": runner.name}

    def runner_poll(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """A job for the runner: its own while it runs one (`cancelled` once a user cancelled
        it), else the oldest queued job it may take, or with `steal`'s probability the oldest
        other than the one it was launched for."""
        with self._lock:
            runner = self._runner_for(body)
            if runner.status != "online":
                raise ApiError(409, "runner is not connected")
            if runner.job is not None:
                return {"job": runner.job.api(), "cancelled": runner.job.cancel_requested}
            # In the order queued (an approved job keeps its place).
            candidates = self._takeable(runner)
            job = next(candidates, None)
            if job is None:
                return None
            own = self._launched_for(runner.name)
            other = job if job.id != own else next(candidates, None)
            if (
                own is not None
                and other is not None
                and self._steal_rng.random() < self.faults.steal
            ):
                job = other
                job.stolen_from = own
                self.counters["steals"] += 1
            job.status = "in_progress"
            job.runner_id = runner.id
            job.runner_name = runner.name
            job.runner_group_id = runner.group_id
            job.started_at = _now_iso()
            job.started_ts = time.time()
            runner.busy = True
            runner.job_id = job.id
            runner.job = job
            self.counters["jobs_assigned"] += 1
            plan = self.plans.get(job.key)
        self._notify("in_progress", job)
        self._emit_job_event("in_progress", job)
        if plan is not None and plan.cancel == "running" and job.run_attempt == 1:
            delay = self.timings.cancel_running_s * plan.jitter
            self._later(delay, self.cancel_job, job.id, "running", key=job.key)
        return {"job": job.api(), "cancelled": False}

    def _launched_for(self, runner_name: str) -> int | None:
        if self.launched_for is None or not self.faults.steal:
            return None
        try:
            return self.launched_for(runner_name)
        except Exception:  # noqa: BLE001 - a hook that fails means "unknown"
            return None

    def _takeable(self, runner: SimRunner) -> Iterator[SimJob]:
        """The jobs `runner` may take, in the order queued (under the lock).

        Attempts before `_settled` are running, completed or superseded: none is queued again
        (only a job waiting for approval is, and it keeps its place), so a poll starts after
        them instead of reading every attempt of the run at every poll."""
        attempts = self.attempts
        while self._settled < len(attempts):
            job = attempts[self._settled]
            if job.status not in ("in_progress", "completed") and self.jobs[job.id] is job:
                break
            self._settled += 1
        labels = {lb.casefold() for lb in runner.labels}
        for job in itertools.islice(attempts, self._settled, None):
            if self.jobs[job.id] is job and self._may_take(runner, job, labels):
                yield job

    @staticmethod
    def _may_take(runner: SimRunner, job: SimJob, labels: set[str] | None = None) -> bool:
        """Queued (not held for approval), labels all among the runner's (`labels`: theirs,
        casefolded), and a repository the runner's scope admits (an organization's runners:
        its repositories; a repository's: its own)."""
        if job.status != "queued" or job.held:
            return False
        if labels is None:
            labels = {lb.casefold() for lb in runner.labels}
        if not {lb.casefold() for lb in job.labels} <= labels:
            return False
        kind, _, where = runner.scope.partition("/")
        if kind == "repos":
            return where.casefold() == job.repo.casefold()
        return job.repo.split("/", 1)[0].casefold() == where.casefold()

    def runner_complete(self, body: dict[str, Any]) -> None:
        """The runner finished its job: the job completes and the ephemeral runner is removed.
        A job a user cancelled completes as cancelled, whatever the runner says."""
        conclusion = str(body.get("conclusion") or "success")
        with self._lock:
            runner = self._runner_for(body)
            job = runner.job
            if job is None or job.status != "in_progress":
                raise ApiError(409, "no job in progress on this runner")
            if job.cancel_requested:
                conclusion = "cancelled"
            job.status = "completed"
            job.conclusion = conclusion
            self.runners.pop(runner.id, None)
            self.counters[f"jobs_{conclusion}"] += 1
        self._completed(job)

    def runner_disconnect(self, body: dict[str, Any]) -> None:
        """The runner process went away. A job it was running fails (the runner was lost), or is
        cancelled when a user had cancelled it."""
        with self._lock:
            runner = self._runner_for(body)
            runner.status = "offline"
            runner.busy = False
            job = runner.job
            lost = job is not None and job.status == "in_progress"
            if lost and job is not None:
                job.status = "completed"
                job.conclusion = "cancelled" if job.cancel_requested else "failure"
                self.counters["jobs_lost_runner"] += 1
            if runner.job is not None:
                # An ephemeral runner that took a job is removed by GitHub afterwards.
                self.runners.pop(runner.id, None)
        if lost and job is not None:
            self._completed(job)

    # ------------------------------------------------------------------ Apps
    def add_app(self, app_id: int | None = None, installation_id: int | None = None) -> SimApp:
        """Another GitHub App with its own key, installed on the owner (its own installation
        id, so its own rate-limit budgets)."""
        with self._lock:
            app_id = app_id or max(self.apps) + 1
            installation_id = installation_id or max(self.installations) + 1
            if app_id in self.apps or installation_id in self.installations:
                raise ValueError(f"App {app_id} or installation {installation_id} exists")
            pem, public_key = _key_pair()
            app = SimApp(app_id, installation_id, pem, public_key)
            self.apps[app_id] = app
            self.installations[installation_id] = self.owner
            self.installation_apps[installation_id] = app_id
            self.issued_secrets.append(pem)
        return app

    def app_of(self, installation_id: int) -> int:
        """The App an installation belongs to."""
        return self.installation_apps.get(installation_id, self.app_id)

    def installation_of(self, app_id: int, account: str) -> int:
        """The App's installation on an account (user or organization), else 404."""
        with self._lock:
            for installation_id, login in sorted(self.installations.items()):
                mine = self.app_of(installation_id) == app_id
                if mine and login.casefold() == account.casefold():
                    return installation_id
        raise ApiError(404, "Not Found")

    # ------------------------------------------------------------------ REST: auth
    def app_auth(self, headers: Any) -> int:
        """The id of the App whose JWT signed the request (401 otherwise)."""
        token = _bearer(headers)
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
            app = self.apps.get(int(str(issuer)))
        except (jwt.PyJWTError, ValueError):
            app = None
        try:
            claims = jwt.decode(
                token,
                app.public_key if app is not None else self._public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
                leeway=60,
            )
        except jwt.PyJWTError as exc:
            raise ApiError(401, f"A JSON web token could not be decoded ({exc})") from None
        if app is None or str(claims.get("iss")) != str(app.app_id):
            raise ApiError(401, "'Issuer' claim ('iss') must be the app id")
        if int(claims["exp"]) - int(claims["iat"]) > 660:
            raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")
        return app.app_id

    def installation_auth(self, headers: Any, owner: str) -> int | None:
        """The installation whose token made the request (None: the personal token)."""
        token = _bearer(headers)
        with self._lock:
            if token == self.pat:
                return None
            found = self._tokens.get(token)
        if found is None:
            raise ApiError(401, "Bad credentials")
        installation_id, expires = found
        if time.time() >= expires:
            self.counters["expired_tokens_refused"] += 1
            raise ApiError(401, "Bad credentials (token expired)")
        if self.installations.get(installation_id, "").casefold() != owner.casefold():
            raise ApiError(404, "Not Found")
        return installation_id

    def issue_token(self, installation_id: int, app_id: int | None = None) -> dict[str, Any]:
        if installation_id not in self.installations:
            raise ApiError(404, "Not Found")
        if app_id is not None and self.app_of(installation_id) != app_id:
            raise ApiError(404, "Not Found")  # another App's installation
        token = "ghs_" + secrets.token_urlsafe(27)
        expires = time.time() + self.token_ttl_s
        with self._lock:
            self._tokens[token] = (installation_id, expires)
            self.issued_secrets.append(token)
            self.counters["tokens_issued"] += 1
        # A token carries the installation's permissions (jitrunners asks for no narrower set).
        return {
            "token": token,
            "expires_at": _now_iso(expires),
            "permissions": dict(INSTALLATION_PERMISSIONS),
            "repository_selection": "selected",
        }

    # ------------------------------------------------------------------ REST: runners and jobs
    def generate_jitconfig(
        self, scope: str, body: Any, installation_id: int | None = None
    ) -> dict[str, Any]:
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
            if installation_id is not None:
                self.jitconfigs_by_installation[installation_id] += 1
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
        group: dict[str, Any] = {
            "id": group_id,
            "name": "Default" if group_id == 1 else f"group-{group_id}",
            "default": group_id == 1,
            "visibility": configured.get("visibility", "selected"),
            "allows_public_repositories": configured.get("allows_public_repositories", False),
            "restricted_to_workflows": False,
            "selected_workflows": [],
            "workflow_restrictions_read_only": False,
            "runners_url": f"{API_URL}/orgs/{self.owner}/actions/runner-groups/{group_id}/runners",
            "hosted_runners_url": (
                f"{API_URL}/orgs/{self.owner}/actions/runner-groups/{group_id}/hosted-runners"
            ),
            "inherited": False,
        }
        if group["visibility"] == "selected":
            group["selected_repositories_url"] = (
                f"{API_URL}/orgs/{self.owner}/actions/runner-groups/{group_id}/repositories"
            )
        return group

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
        """The job's latest attempt."""
        job = self.jobs.get(job_id)
        if job is None or job.repo.casefold() != repo.casefold():
            raise ApiError(404, "Not Found")
        return job

    def rerun_job(self, repo: str, job_id: int) -> SimJob:
        """`POST .../jobs/{id}/rerun`: the next attempt, under the same job id."""
        again = self._queue_attempt(self.get_job(repo, job_id))
        if again is None:
            raise ApiError(403, "This job is not complete and cannot be re-run")
        with self._lock:
            self.counters["reruns"] += 1
        return again

    def workflow_runs(
        self, repo: str, run_id: int | None = None, *, run_ids: Iterable[int] | None = None
    ) -> dict[int, list[SimJob]]:
        """The repository's runs (run id -> the latest execution of each of its jobs, by job
        id), the shape `GET .../actions/runs` and `.../runs/{id}/jobs?filter=latest` answer
        from, by run id; with `run_id` (or `run_ids`), those runs only."""
        with self._lock:
            runs = self._runs.get(repo.casefold(), {})
            if run_id is not None:
                run_ids = (run_id,)
            wanted = runs if run_ids is None else {i: runs[i] for i in run_ids if i in runs}
            return {
                rid: sorted(latest.values(), key=lambda j: j.id)
                for rid, latest in sorted(wanted.items())
            }

    def run_ids(self, repo: str, status: str | None = None) -> list[int]:
        """The repository's run ids, newest first; with `status`, those whose status or
        conclusion it is (`GET .../actions/runs?status=`). One pass over the runs, drawing up
        none: the housekeeper lists them on every pass, page by page, in a burst of thousands."""
        with self._lock:
            runs = self._runs.get(repo.casefold(), {})
            found = [
                run_id
                for run_id, latest in runs.items()
                if status is None or status in _run_status(latest.values())
            ]
        found.sort(reverse=True)
        return found

    def _index_run(self, job: SimJob) -> None:
        """Record `job` as its logical job's latest attempt in its run (under the lock)."""
        run = self._runs.setdefault(job.repo.casefold(), {}).setdefault(job.run_id, {})
        known = run.get(job.key)
        if known is None or (job.run_attempt, job.id) > (known.run_attempt, known.id):
            run[job.key] = job

    # ------------------------------------------------------------------ the App manifest flow
    def new_app_from_manifest(self, org: str, form: dict[str, list[str]]) -> str:
        """GitHub's "create an App from a manifest" page, posted to: the manifest is checked as
        GitHub checks it (a redirect URL, a webhook URL when the hook is active) and a one-time
        code is handed back on the redirect. Returns the redirect's URL."""
        raw = (form.get("manifest") or [""])[0]
        try:
            manifest = json.loads(raw)
        except ValueError:
            raise ApiError(422, "manifest is not valid JSON") from None
        if not isinstance(manifest, dict):
            raise ApiError(422, "manifest must be a JSON object")
        redirect = manifest.get("redirect_url")
        hook = manifest.get("hook_attributes") or {}
        if not isinstance(redirect, str) or not redirect.startswith(("http://", "https://")):
            raise ApiError(422, "redirect_url is required")
        if hook.get("active", True) and not str(hook.get("url", "")).startswith("http"):
            raise ApiError(422, "hook_attributes.url is required for an active webhook")
        code = secrets.token_hex(10)
        with self._lock:
            self.manifest_codes[code] = (org, manifest)
        state = (form.get("state") or [""])[0]
        query = urlencode({"code": code, **({"state": state} if state else {})})
        return f"{redirect}{'&' if '?' in redirect else '?'}{query}"

    def convert_manifest(self, code: str) -> dict[str, Any]:
        """`POST /app-manifests/{code}/conversions`: the App the code stands for, with its
        credentials (a code converts once, as on GitHub). The App is this simulator's own."""
        with self._lock:
            found = self.manifest_codes.pop(code, None)
        if found is None:
            raise ApiError(404, "Not Found")
        org, manifest = found
        slug = re.sub(r"[^a-z0-9-]+", "-", str(manifest.get("name") or "app").casefold())
        now = _now_iso()
        app = {
            "id": self.app_id,
            "slug": slug.strip("-") or "app",
            "node_id": _node_id("Integration", self.app_id),
            "client_id": "Iv1.sim0000000000",
            "owner": _user(org, "Organization"),
            "name": str(manifest.get("name") or "app"),
            "description": manifest.get("description"),
            "external_url": str(manifest.get("url") or f"{WEB_URL}/{org}"),
            "html_url": f"{WEB_URL}/apps/{slug.strip('-') or 'app'}",
            "created_at": now,
            "updated_at": now,
            # Every App may read metadata, whether or not its manifest asks.
            "permissions": {"metadata": "read", **(manifest.get("default_permissions") or {})},
            "events": list(manifest.get("default_events") or []),
            "installations_count": 0,
        }
        with self._lock:
            self.apps_created.append({**app, "manifest": manifest})
        secret = "sim-client-secret-" + secrets.token_hex(8)
        self.issued_secrets.append(secret)
        return {
            **app,
            "client_secret": secret,
            "webhook_secret": self.webhook_secret,
            "pem": self.private_key_pem,
        }

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


def _error(status: int, message: str) -> dict[str, Any]:
    """An error body as GitHub's (`basic-error`, `validation-error`): message, documentation_url,
    status."""
    return {"message": message, "documentation_url": DOCS_URL, "status": str(status)}


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


def _run_status(jobs: Iterable[SimJob]) -> tuple[str, str | None]:
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
    latest = max(j.run_attempt for j in jobs)
    api = f"{API_URL}/repos/{repo}"
    created = min(j.created_at for j in jobs)
    return {
        "id": run_id,
        "name": "ci",
        "node_id": _node_id("WorkflowRun", run_id),
        "head_branch": "main",
        "head_sha": HEAD_SHA,
        "path": ".github/workflows/ci.yml",
        "display_title": "ci",
        "run_number": run_id,
        "event": "push",
        "status": status,
        "conclusion": conclusion,
        "workflow_id": 1,
        "check_suite_id": run_id,
        "check_suite_node_id": _node_id("CheckSuite", run_id),
        "url": f"{api}/actions/runs/{run_id}",
        "html_url": f"{WEB_URL}/{repo}/actions/runs/{run_id}",
        "pull_requests": [],
        "created_at": created,
        "updated_at": max(j.completed_at or j.started_at or j.created_at for j in jobs),
        "actor": _user("octocat"),
        "triggering_actor": _user("octocat"),
        "run_attempt": latest,
        "run_started_at": min(j.created_at for j in jobs if j.run_attempt == latest),
        "jobs_url": f"{url}/repos/{repo}/actions/runs/{run_id}/jobs",
        "logs_url": f"{api}/actions/runs/{run_id}/logs",
        "check_suite_url": f"{api}/check-suites/{run_id}",
        "artifacts_url": f"{api}/actions/runs/{run_id}/artifacts",
        "cancel_url": f"{api}/actions/runs/{run_id}/cancel",
        "rerun_url": f"{api}/actions/runs/{run_id}/rerun",
        "previous_attempt_url": None
        if latest == 1
        else f"{api}/actions/runs/{run_id}/attempts/{latest - 1}",
        "workflow_url": f"{api}/actions/workflows/1",
        "head_commit": {
            "id": HEAD_SHA,
            "tree_id": HEAD_SHA[::-1],
            "message": "ci",
            "timestamp": created,
            "author": {"name": "Monalisa Octocat", "email": "octocat@github.sim"},
            "committer": {"name": "GitHub", "email": "noreply@github.sim"},
        },
        "repository": _repository(repo),
        "head_repository": _repository(repo),
    }


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p), name)
    for m, p, name in [
        ("POST", r"^/app/installations/(\d+)/access_tokens$", "access_tokens"),
        ("GET", r"^/app/installations$", "installations"),
        ("GET", r"^/orgs/([^/]+)/installation$", "org_installation"),
        ("GET", r"^/repos/([^/]+)/[^/]+/installation$", "repo_installation"),
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
        ("POST", r"^/app-manifests/([^/]+)/conversions$", "manifest_conversion"),
        # GitHub's web page (not the REST API): an App from a posted manifest.
        ("POST", r"^/organizations/([^/]+)/settings/apps/new$", "sim_web_new_app"),
        ("POST", r"^/_sim/runner/(connect|poll|complete|disconnect)$", "sim_runner"),
        ("POST", r"^/_sim/jobs$", "sim_queue_job"),
        ("GET", r"^/_sim/state$", "sim_state"),
    ]
]


# Path templates the call counters are keyed by (as in docs/contracts.md).
_TEMPLATES = {
    "access_tokens": "/app/installations/{id}/access_tokens",
    "installations": "/app/installations",
    "org_installation": "/orgs/{org}/installation",
    "repo_installation": "/repos/{repo}/installation",
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
    "manifest_conversion": "/app-manifests/{code}/conversions",
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
            self._json(404, _error(404, "Not Found"))
            return
        template = _TEMPLATES.get(name, path)
        is_rest = not name.startswith("sim_")
        if is_rest:
            sim.calls[f"{method} {template}"] += 1
        limited = None
        if is_rest and sim.rate_limits is not None:
            limited = rate_limit(sim, self.headers, method, path, f"{method} {template}")
            if limited.refusal is not None:
                self._json(*limited.answer())
                return
        try:
            if is_rest and (fault := sim.fault_for(path)) is not None:
                raise fault
            if name == "sim_web_new_app":  # a browser's form post, not JSON
                body: Any = parse_qs(raw.decode())
            else:
                body = json.loads(raw) if raw else {}
            status, answer, headers = getattr(self, f"_r_{name}")(match, query, body)
        except ApiError as exc:
            status, answer, headers = exc.status, _error(exc.status, exc.message), exc.headers
        except (ValueError, KeyError, TypeError) as exc:
            status, headers = 400, {}
            answer = _error(400, f"Problems parsing request: {type(exc).__name__}")
        if is_rest:
            for observe in list(sim.observers):
                observe(method, path, status, answer)
        if limited is not None:
            headers = {**limited.headers, **(headers or {})}
        try:
            self._json(status, answer, headers)
        finally:
            if limited is not None:
                limited.release()

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-GitHub-Api-Version-Selected", API_VERSION)
        given = {key.lower() for key in headers or {}}
        if "x-ratelimit-limit" not in given:  # the modeled limits' own (devstack/quotas.py)
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
        app_id = self.simulator.app_auth(self.headers)
        return 201, self.simulator.issue_token(int(m.group(1)), app_id), {}

    def _r_installations(self, m: re.Match[str], q: Any, b: Any):
        sim = self.simulator
        app_id = sim.app_auth(self.headers)
        items = [
            _installation(i, login, app_id)
            for i, login in sorted(sim.installations.items())
            if sim.app_of(i) == app_id
        ]
        page_items, page, per_page = _page(items, q, self.simulator.page_size_max)
        more = page * per_page < len(items)
        return 200, page_items, self._link("/app/installations", q, page, per_page, more)

    def _r_org_installation(self, m: re.Match[str], q: Any, b: Any):
        sim = self.simulator
        app_id = sim.app_auth(self.headers)
        installation_id = sim.installation_of(app_id, m.group(1))
        return 200, _installation(installation_id, sim.installations[installation_id], app_id), {}

    _r_repo_installation = _r_org_installation  # the repository's owner's installation

    def _r_deliveries(self, m: re.Match[str], q: Any, b: Any):
        sim = self.simulator
        sim.app_auth(self.headers)
        try:
            per_page = max(1, min(sim.page_size_max, int(q.get("per_page", ["30"])[0])))
        except ValueError:
            raise ApiError(422, "per_page must be an integer") from None
        cursor = q.get("cursor", [""])[0]
        try:
            below = int(cursor) if cursor else None
        except ValueError:
            raise ApiError(422, "invalid cursor") from None
        # Newest first, as GitHub lists them; the cursor is the last id seen. The deliveries are
        # kept in id order (made under the lock), so a page reads back from the cursor only as
        # far as it needs, where sorting and filtering all of them cost every page a pass over
        # a burst's tens of thousands.
        page_items: list[SimDelivery] = []
        more = False
        with sim._lock:
            deliveries = sim.deliveries
            end = len(deliveries)
            if below is not None:
                end = bisect.bisect_left(deliveries, below, key=lambda d: d.id)
            for index in range(end - 1, -1, -1):
                if deliveries[index].status == "pending":
                    continue
                if len(page_items) == per_page:
                    more = True
                    break
                page_items.append(deliveries[index])
        headers = {}
        if more:
            params = {"per_page": str(per_page), "cursor": str(page_items[-1].id)}
            headers["Link"] = f'<{sim.url}/app/hook/deliveries?{urlencode(params)}>; rel="next"'
        return 200, [d.api() for d in page_items], headers

    def _r_delivery(self, m: re.Match[str], q: Any, b: Any):
        sim = self.simulator
        sim.app_auth(self.headers)
        found = next((d for d in sim.deliveries if d.id == int(m.group(1))), None)
        if found is None:
            raise ApiError(404, "Not Found")
        # One delivery also says what was sent and what came back (headers kept short here).
        detail = {
            **found.api(),
            "url": sim.webhook_url or "",
            "request": {
                "headers": {"X-GitHub-Event": found.event, "X-GitHub-Delivery": found.guid},
                "payload": json.loads(found.body),
            },
            "response": {"headers": {}, "payload": None},
        }
        return 200, detail, {}

    def _r_redeliver(self, m: re.Match[str], q: Any, b: Any):
        self.simulator.app_auth(self.headers)
        self.simulator.redeliver(int(m.group(1)))
        return 202, {}, {}

    def _r_jitconfig(self, m: re.Match[str], q: Any, b: Any):
        scope = m.group(1)
        installation_id = self.simulator.installation_auth(self.headers, self._owner_of(scope))
        return 201, self.simulator.generate_jitconfig(scope, b, installation_id), {}

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
        runs = sim.run_ids(repo, wanted)
        # Only the page's runs are drawn up: a burst's thousands of runs each cost a whole
        # run object on every listing (the housekeeper's, every pass).
        page_ids, page, per_page = _page(runs, q, sim.page_size_max)
        page_runs = sim.workflow_runs(repo, run_ids=page_ids).items()
        page_items = [_run_api(run_id, jobs, sim.url) for run_id, jobs in reversed(page_runs)]
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
        jobs = sim.workflow_runs(repo, run_id).get(run_id)
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

    def _r_manifest_conversion(self, m: re.Match[str], q: Any, b: Any):
        # No authentication: the one-time code is the credential.
        return 201, self.simulator.convert_manifest(m.group(1)), {}

    def _r_sim_web_new_app(self, m: re.Match[str], q: Any, b: Any):
        form = {**q, **(b if isinstance(b, dict) else {})}
        location = self.simulator.new_app_from_manifest(m.group(1), form)
        return 302, None, {"Location": location}

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
