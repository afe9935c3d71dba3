"""Property: every job GitHub has queued has a runner of ours, whatever the deliveries did.

Runners are fungible (DESIGN §3b, §6b): GitHub hands any matching queued job to any idle runner,
so a runner launched for job A may run job B. Hypothesis draws the traffic step by step among the
steps that can act at that point: a job queued (or held `waiting` for an approval), approved,
cancelled before any runner took it; an idle runner taking ANY matching queued job (a steal when
it was launched for another); a job finishing; an idle runner with no matching job queued idling
out; a pending webhook delivery arriving once, twice (same delivery id), copied (GitHub's own
duplicate: same event, new id) or never, picked from all pending ones (so deliveries arrive late
and out of order); a scale-up batch; time passing. Our real code runs, against moto (EC2, SSM,
SQS, DynamoDB) and a small fake of GitHub's REST API (jobs, workflow runs, runner registrations
with their busy flag, JIT configs), configured as deployed (delivery table: delivery ids and
launches claimed):

- the webhook Lambda (`handlers.webhook.handler`) on signed deliveries;
- the scale-up Lambda (`handlers.scale_up.handler`) on batches received from the moto queue,
  failed records left in it. `start` messages run the real start path (JIT config from the fake
  GitHub, SSM parameter, RunCommand in moto), which is what registers the runner: only then can
  it take a job. Moto reports every command finished at once; a hook answers `InProgress` for
  runners still alive in the model, so the housekeeper sees them running;
- the housekeeper pass (`lifecycle.sweep.sweep`) with a Context on the real GitHub client, in
  token mode: failed deliveries are not redelivered, so a lost delivery is lost for good and only
  the reconciliation pass makes up for it (ALLOWED_REPOS names the repositories it reads).

A runner's end (job done, or idle timeout) is modelled as scale-down doing its part at once:
instance terminated, registration gone. Time passing makes every delayed or in-flight message
visible. When the traffic stops, the pending deliveries arrive in order, then:

1. No delivery lost (duplicates, copies, reordering allowed): once the queue is drained through
   scale-up, every pool (template and runner scope) has at least as many runners of ours that
   have not taken a job (booting or idle) as GitHub has jobs queued. Counts, never job ids. This
   is what the swap bookkeeping (`bookkeeping.record_taken`) provides without the housekeeper.
2. Deliveries may be lost: the same after one housekeeper pass and another drain: the
   reconciliation pass's work. Excused: a queued job a busy runner's stale job tags name (see
   test_a_busy_runner_whose_tags_name_a_queued_job_hides_it_from_reconciliation).

A pool may fall short only while its template is at max runners, and no template is ever over
it. Taking either piece away makes hypothesis find a counterexample (the removal tests); the
counterexamples found while writing this are scripted at the end.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import responses
from hypothesis import HealthCheck, Phase, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from jitrunners.aws.clients import client
from jitrunners.models import runner_instance
from tests.conftest import LambdaContext, _reset_process_caches
from tests.support.ec2 import make_world
from tests.support.github import API
from tests.support.webhooks import SECRET, proxy_event, workflow_job_payload

ACCOUNT = "123456789012"
REGION = "eu-west-1"
OWNER = "acme"
REPOS = ("acme/app", "acme/lib")
TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "linux-x64",
        "labels": ["self-hosted", "linux", "x64", "linux-x64"],
        "launch_template": "jitrunners-linux-x64",
        "instance_types": ["m7i.large"],
        "market": "spot",
        "max_runners": 4,
        "runner_group_id": 1,
        "scope": "org",
    },
    {
        "name": "linux-arm64",
        "labels": ["self-hosted", "linux", "arm64", "linux-arm64"],
        "launch_template": "jitrunners-linux-arm64",
        "instance_types": ["m7g.large"],
        "market": "spot",
        "max_runners": 2,
        "scope": "repo",
    },
]
JOB_LABELS = {"linux-x64": ["self-hosted", "linux-x64"], "linux-arm64": ["self-hosted", "arm64"]}
TOKEN = "ghp_property_test_token_0123456789"
DELIVERIES_TABLE = "jitrunners-deliveries"
# The housekeeper runs a few minutes after the traffic: past the reconciliation's grace for
# young jobs, well inside every instance's start timeout.
HOUSEKEEPER_LAG = timedelta(minutes=5)
DRAIN_ROUNDS = 40


# --- GitHub ------------------------------------------------------------------------------------


@dataclass
class Job:
    id: int
    repo: str
    template: str
    created_at: str
    status: str = "queued"  # queued, waiting, in_progress, completed
    conclusion: str | None = None
    runner_name: str | None = None

    @property
    def run_id(self) -> int:
        return self.id * 10  # one job per workflow run

    @property
    def labels(self) -> list[str]:
        return JOB_LABELS[self.template]

    def pool(self) -> tuple[str, str]:
        return pool_of(self.template, self.repo)


@dataclass
class Registration:
    id: int
    name: str
    scope: str  # "orgs/acme" or "repos/acme/app"
    labels: list[str]
    busy: bool = False
    status: str = "online"


def pool_of(template: str, repo: str) -> tuple[str, str]:
    """Which runners can take a job: the template's, registered where the job is seen."""
    scope = next(t["scope"] for t in TEMPLATES if t["name"] == template)
    return (template, f"orgs/{OWNER}" if scope == "org" else f"repos/{repo}")


class FakeGitHub:
    """GitHub's REST API as our client calls it, over one `responses` callback."""

    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}
        self.runners: dict[str, dict[str, Registration]] = {}
        self._ids = itertools.count(5000)

    def registration(self, name: str) -> Registration | None:
        """A registration by its runner name, or by the instance its runner runs on."""
        return next(
            (
                r
                for s in self.runners.values()
                for r in s.values()
                if name in (r.name, runner_instance(r.name))
            ),
            None,
        )

    def answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        url = urlsplit(request.url)
        path = url.path.removeprefix(urlsplit(API).path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        method = request.method
        status, body = self._route(method, path.strip("/"), query, request.body)
        return status, {"content-type": "application/json"}, json.dumps(body)

    def _route(self, method: str, path: str, query: dict[str, str], raw: Any) -> tuple[int, Any]:
        if m := re.fullmatch(r"orgs/(\w+)/actions/runner-groups/(\d+)", path):
            return 200, {
                "id": int(m[2]),
                "name": "ours",
                "visibility": "selected",
                "allows_public_repositories": False,
            }
        if m := re.fullmatch(r"((?:orgs/\w+)|(?:repos/\w+/\w+))/actions/runners(.*)", path):
            return self._runners(method, m[1], m[2], query, raw)
        if m := re.fullmatch(r"repos/(\w+/\w+)/actions/jobs/(\d+)", path):
            job = self.jobs.get(int(m[2]))
            if job is None or job.repo != m[1]:
                return 404, {"message": "Not Found"}
            return 200, self._job(job)
        if m := re.fullmatch(r"repos/(\w+/\w+)/actions/runs", path):
            runs = [
                self._run(job)
                for job in sorted(self.jobs.values(), key=lambda j: -j.id)
                if job.repo == m[1] and job.status == query.get("status")
            ]
            return 200, {"total_count": len(runs), "workflow_runs": runs}
        if m := re.fullmatch(r"repos/(\w+/\w+)/actions/runs/(\d+)/jobs", path):
            jobs = [self._job(j) for j in self.jobs.values() if j.run_id == int(m[2])]
            return 200, {"total_count": len(jobs), "jobs": jobs}
        return 404, {"message": f"not modelled: {method} {path}"}

    def _runners(
        self, method: str, scope: str, rest: str, query: dict[str, str], raw: Any
    ) -> tuple[int, Any]:
        listed = self.runners.setdefault(scope, {})
        if method == "POST" and rest == "/generate-jitconfig":
            sent = json.loads(raw)
            runner = Registration(next(self._ids), sent["name"], scope, sent["labels"])
            listed[runner.name] = runner
            body = {"runner": {"id": runner.id, "name": runner.name}}
            return 201, {**body, "encoded_jit_config": "JIT-secret"}
        if method == "GET" and rest == "":
            found = [r for r in listed.values() if query.get("name") in (None, r.name)]
            return 200, {"total_count": len(found), "runners": [self._runner(r) for r in found]}
        if method == "DELETE" and (m := re.fullmatch(r"/(\d+)", rest)):
            for name, runner in list(listed.items()):
                if runner.id == int(m[1]):
                    if runner.busy:
                        return 422, {"message": "Runner is busy"}
                    del listed[name]
                    return 204, {}
            return 404, {"message": "Not Found"}
        return 404, {"message": f"not modelled: {method} {scope}/actions/runners{rest}"}

    @staticmethod
    def _runner(runner: Registration) -> dict[str, Any]:
        return {
            "id": runner.id,
            "name": runner.name,
            "status": runner.status,
            "busy": runner.busy,
            "labels": [{"name": label} for label in runner.labels],
        }

    @staticmethod
    def _job(job: Job) -> dict[str, Any]:
        return {
            "id": job.id,
            "run_id": job.run_id,
            "run_attempt": 1,
            "status": job.status,
            "conclusion": job.conclusion,
            "labels": job.labels,
            "runner_name": job.runner_name,
            "created_at": job.created_at,
        }

    @staticmethod
    def _run(job: Job) -> dict[str, Any]:
        return {
            "id": job.run_id,
            "status": job.status,
            "run_attempt": 1,
            "created_at": job.created_at,
            "repository": {"full_name": job.repo, "private": True, "visibility": "private"},
        }


# --- the traffic -------------------------------------------------------------------------------

# Hypothesis draws each step among those that can act now (a take needs an idle runner and a
# matching queued job, a delivery a pending delivery...), then what it acts on. Everything it
# picks from is in an order that does not depend on moto's random ids, so a seed replays. The
# steps taken are kept as a script, which a failing checkpoint prints.
MAX_JOBS = 8
JOB_TEMPLATES = ("linux-x64", "linux-x64", "linux-arm64")
WEIGHTS = {
    "job": 3,
    "deliver": 4,
    "scale_up": 4,
    "take": 6,  # GitHub hands an idle runner a job within seconds
    "finish": 1,
    "idle_out": 1,
    "cancel": 1,
    "approve": 1,
    "tick": 1,
}


def tally(what: str) -> None:
    """Count an event for `--hypothesis-show-statistics` (scripted scenarios count nothing)."""
    if currently_in_test_context():
        event(what)


@dataclass
class Delivery:
    guid: str
    action: str
    job_id: int
    body: bytes

    def __str__(self) -> str:
        return f"{self.action}({self.job_id}) [{self.guid}]"


@dataclass
class World:
    github: FakeGitHub
    queue_url: str
    lambda_context: LambdaContext = field(default_factory=LambdaContext)
    pending: list[Delivery] = field(default_factory=list)
    exited: set[str] = field(default_factory=set)  # instances whose runner process ended
    script: list[str] = field(default_factory=list)
    _guids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _job_ids: Iterator[int] = field(default_factory=lambda: itertools.count(101))

    def say(self, line: str) -> None:
        self.script.append(line)

    def runner_label(self, runner: Registration) -> str:
        tags = live_instances().get(str(runner_instance(runner.name)), {})
        launched_for = tags.get("jitrunners:launched-for", "?").split("/", 1)[0]
        return f"runner #{runner.id} (launched for {launched_for})"

    # GitHub's side
    def new_job(self, repo: str, template: str, waiting: bool) -> None:
        created = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
        job = Job(next(self._job_ids), repo, template, created.isoformat().replace("+00:00", "Z"))
        self.github.jobs[job.id] = job
        self.say(f"job {job.id} queued: {repo} {template}" + (", then waiting" if waiting else ""))
        self.emit(job, "queued")
        if waiting:  # an environment's protection rule holds it: GitHub sends `waiting`
            job.status = "waiting"
            self.emit(job, "waiting")

    def emit(self, job: Job, action: str) -> None:
        payload = workflow_job_payload(
            action=action,
            job_id=job.id,
            run_id=job.run_id,
            labels=job.labels,
            repo=job.repo,
            conclusion=job.conclusion,
            runner_name=job.runner_name,
            created_at=job.created_at,
        )
        payload["workflow_job"]["status"] = job.status
        guid = f"guid-{next(self._guids)}"
        self.pending.append(Delivery(guid, action, job.id, json.dumps(payload).encode()))

    def jobs(self, *statuses: str) -> list[Job]:
        return [j for j in self.github.jobs.values() if j.status in statuses]

    def approve(self, job: Job) -> None:
        self.say(f"job {job.id} approved: queued")
        job.status = "queued"
        self.emit(job, "queued")

    def cancel(self, job: Job) -> None:
        self.say(f"job {job.id} cancelled while {job.status}")
        job.status, job.conclusion = "completed", "cancelled"
        self.emit(job, "completed")

    def runners(self, *, busy: bool) -> list[Registration]:
        """Registered runners whose process runs, oldest registration first."""
        found = [
            r
            for scope in self.github.runners.values()
            for r in scope.values()
            if r.busy == busy and r.name not in self.exited
        ]
        return sorted(found, key=lambda r: r.id)

    def matching(self, runner: Registration) -> list[Job]:
        return [
            j
            for j in self.jobs("queued")
            if set(j.labels) <= set(runner.labels) and j.pool()[1] == runner.scope
        ]

    def take(self, runner: Registration, job: Job) -> None:
        label = self.runner_label(runner)
        steal = not label.endswith(f"for {job.id})")
        tally("take: a job it was not launched for" if steal else "take: its own job")
        self.say(f"{label} takes job {job.id}")
        runner.busy = True
        job.status, job.runner_name = "in_progress", runner.name
        self.emit(job, "in_progress")

    def finish(self, job: Job) -> None:
        runner = self.github.registration(str(job.runner_name))
        self.say(f"job {job.id} completes on {self.runner_label(runner) if runner else '?'}")
        job.status, job.conclusion = "completed", "success"
        self.emit(job, "completed")
        self.runner_exits(str(job.runner_name))

    def idle_out(self, runner: Registration) -> None:
        self.say(f"{self.runner_label(runner)} idles out")
        self.runner_exits(runner.name)

    def runner_exits(self, name: str) -> None:
        """The runner process ended; GitHub removes the ephemeral registration, and scale-down
        (its command's status event) terminates the instance."""
        self.exited.add(name)
        registration = self.github.registration(name)
        if registration is not None:
            del self.github.runners[registration.scope][registration.name]
        boto3.client("ec2").terminate_instances(InstanceIds=[str(runner_instance(name))])

    # our side
    def deliver(self, delivery: Delivery, fate: str) -> None:
        self.pending.remove(delivery)
        tally(f"delivery {delivery.action}: {fate}")
        self.say(f"delivery {delivery} {fate}")
        if fate in ("once", "twice", "copied"):
            self.webhook(delivery)
        if fate == "twice":
            self.webhook(delivery)  # the same delivery again: its id is claimed already
        elif fate == "copied":
            # GitHub's own duplicate: the same event under another delivery id.
            self.webhook(replace(delivery, guid=f"{delivery.guid}-copy"))

    def webhook(self, delivery: Delivery) -> None:
        from jitrunners.handlers import webhook

        request = proxy_event(delivery.body, secret=SECRET, delivery=delivery.guid)
        response = webhook.handler(request, self.lambda_context)
        assert response["statusCode"] == 202, response

    def scale_up(self, n: int) -> int:
        """One scale-up invocation on up to `n` visible messages; returns how many it got."""
        from jitrunners.handlers import scale_up

        sqs = boto3.client("sqs")
        received = sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=n, AttributeNames=["All"]
        ).get("Messages", [])
        if not received:
            return 0
        kinds = Counter(json.loads(m["Body"])["kind"] for m in received)
        self.say(f"scale-up batch: {dict(sorted(kinds.items()))}")
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:jitrunners-jobs",
                "awsRegion": REGION,
            }
            for m in received
        ]
        response = scale_up.handler({"Records": records}, self.lambda_context)
        failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
        for m in received:
            if m["MessageId"] not in failed:  # the event source mapping deletes the rest
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return len(received)

    def tick(self) -> None:
        """Time passes: every delayed or in-flight message is visible again."""
        for message in queued_messages():
            message.visible_at = 0.0
            message.delayed_until = 0.0

    # scripted scenarios name what they act on
    def delivery(self, action: str, job_id: int) -> Delivery:
        return next(d for d in self.pending if (d.action, d.job_id) == (action, job_id))

    def runner_launched_for(self, job_id: int) -> Registration:
        ours = {
            name
            for name, tags in live_instances().items()
            if tags["jitrunners:launched-for"].startswith(f"{job_id}/")
        }
        return next(r for r in self.runners(busy=False) if runner_instance(r.name) in ours)

    # hypothesis picks the traffic
    def step(self, data: st.DataObject, lossy: bool) -> None:
        idle = [r for r in self.runners(busy=False) if self.matching(r)]
        doable = {
            "job": len(self.github.jobs) < MAX_JOBS,
            "deliver": bool(self.pending),
            "scale_up": any(m.visible for m in queued_messages()),
            "take": bool(idle),
            "finish": bool(self.jobs("in_progress")),
            "idle_out": any(not self.matching(r) for r in self.runners(busy=False)),
            "cancel": bool(self.jobs("queued", "waiting")),
            "approve": bool(self.jobs("waiting")),
            "tick": any(not m.visible for m in queued_messages()),
        }
        choices = [kind for kind, weight in WEIGHTS.items() if doable[kind] for _ in range(weight)]
        if not choices:
            return
        kind = data.draw(st.sampled_from(choices), label="step")
        if kind == "job":
            repo = data.draw(st.sampled_from(REPOS), label="repo")
            # Mostly the org template: one pool, where runners take each other's jobs.
            template = data.draw(st.sampled_from(JOB_TEMPLATES), label="labels")
            waiting = data.draw(st.sampled_from((False, False, False, True)), label="waiting")
            self.new_job(repo, template, waiting)
        elif kind == "deliver":
            fates = ["once", "twice", "copied"] + (["lost"] if lossy else [])
            delivery = data.draw(st.sampled_from(self.pending), label="delivery")
            self.deliver(delivery, data.draw(st.sampled_from(fates), label="fate"))
        elif kind == "scale_up":
            size = data.draw(st.integers(1, 10), label="batch size")
            for _ in range(data.draw(st.integers(1, 3), label="batches")):
                self.scale_up(size)
        elif kind == "take":
            runner = data.draw(st.sampled_from(idle), label="runner")
            self.take(runner, data.draw(st.sampled_from(self.matching(runner)), label="job"))
        elif kind == "finish":
            self.finish(data.draw(st.sampled_from(self.jobs("in_progress")), label="job"))
        elif kind == "idle_out":
            alone = [r for r in self.runners(busy=False) if not self.matching(r)]
            self.idle_out(data.draw(st.sampled_from(alone), label="runner"))
        elif kind == "cancel":
            self.cancel(data.draw(st.sampled_from(self.jobs("queued", "waiting")), label="job"))
        elif kind == "approve":
            self.approve(data.draw(st.sampled_from(self.jobs("waiting")), label="job"))
        else:
            self.say("time passes")
            self.tick()

    # the end of the traffic
    def drain(self) -> None:
        """Scale-up runs until the queue is empty, or until a round changes nothing (launches
        deferred for a full template come back unchanged)."""
        before = None
        for _ in range(DRAIN_ROUNDS):
            self.tick()
            while self.scale_up(10):
                pass
            now = (sorted(live_instances().items()), sorted(m.body for m in queued_messages()))
            if not now[1] or now == before:
                return
            before = now
        raise AssertionError("the job queue never settled")

    def housekeeper(self) -> None:
        from jitrunners.config import get_settings, load_templates
        from jitrunners.github.client import get_client
        from jitrunners.lifecycle.cleanup import Context
        from jitrunners.lifecycle.recovery.sweep import sweep

        self.say("housekeeper pass")
        settings = get_settings()
        later = datetime.now(UTC) + HOUSEKEEPER_LAG
        sweep(
            Context.build(settings, load_templates(settings), get_client(settings), lambda: later)
        )

    def shortfalls(self) -> list[str]:
        """Pools with more queued jobs than runners of ours that will take one, except at max
        runners; and templates over max runners."""
        live = live_instances()
        per_template = Counter(tags["jitrunners:template"] for tags in live.values())
        supply: Counter[tuple[str, str]] = Counter()
        for name, tags in live.items():
            registration = self.github.registration(name)
            if registration is not None and registration.busy:
                continue
            # Booting (not registered yet): it registers where its launch message said.
            launched_for = tags["jitrunners:launched-for"].split("/", 3)[3]
            supply[pool_of(tags["jitrunners:template"], launched_for)] += 1
        demand = Counter(j.pool() for j in self.jobs("queued"))
        found = [
            f"{template} has {per_template[template]} instances, over {t['max_runners']}"
            for t in TEMPLATES
            if per_template[template := t["name"]] > t["max_runners"]
        ]
        for pool, queued in sorted(demand.items()):
            template = next(t for t in TEMPLATES if t["name"] == pool[0])
            if queued > supply[pool] and per_template[pool[0]] < template["max_runners"]:
                found.append(f"{pool}: {queued} jobs queued, {supply[pool]} runners for them")
        return found

    def check(self, checkpoint: str) -> None:
        found = self.shortfalls()
        script = "\n  ".join(self.script)
        assert not found, f"{checkpoint}: {found}\nsteps:\n  {script}"


def live_instances() -> dict[str, dict[str, str]]:
    """Our pending and running instances: id -> tags (read from moto's state, not its API: the
    model asks often, and this is not what is under test)."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[ACCOUNT][REGION]
    found: dict[str, dict[str, str]] = {}
    for instance in backend.all_instances():
        if instance.state not in ("pending", "running"):
            continue
        tags = {t["key"]: t["value"] for t in instance.get_tags()}
        if tags.get("jitrunners:prefix") == "jitrunners":
            found[instance.id] = tags
    return found


def queued_messages() -> list[Any]:
    """The job queue's messages as moto holds them (visible, delayed or in flight)."""
    from moto.sqs.models import sqs_backends

    return list(sqs_backends[ACCOUNT][REGION].queues["jitrunners-jobs"]._messages)


# --- the property ------------------------------------------------------------------------------


NO_LOSS = "queue drained, no delivery lost"
AFTER_HOUSEKEEPER = "queue drained, housekeeper run, queue drained"


@dataclass
class Harness:
    """What outlives one example: moto's mock (reset between examples, so the adapters' cached
    clients stay valid), the HTTP mock GitHub answers on, and the world of the example."""

    aws: Any
    world: World | None = None

    def answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        assert self.world is not None
        return self.world.github.answer(request)

    def command_status(self, params: dict[str, Any], **_: Any) -> Any:
        """Moto says every command finished at once; a runner alive in the model still runs."""
        from botocore.awsrequest import AWSResponse

        asked = json.loads(params["body"])
        if self.world is None or asked["InstanceId"] in self.world.exited:
            return None  # moto's answer: Success
        parsed = {"CommandId": asked["CommandId"], "Status": "InProgress"}
        return AWSResponse("https://ssm", 200, {}, None), parsed


@contextmanager
def fresh_world(harness: Harness) -> Iterator[World]:
    """An empty world: moto (queue, subnets, launch templates, token, delivery table) and an
    empty fake GitHub."""
    from jitrunners import config
    from jitrunners.lifecycle.provisioning import boundary

    harness.aws.reset()
    queue_url = boto3.client("sqs").create_queue(QueueName="jitrunners-jobs")["QueueUrl"]
    subnets = make_world(("jitrunners-linux-x64", "jitrunners-linux-arm64"))
    boto3.client("ssm").put_parameter(
        Name="/jitrunners/github-token", Value=TOKEN, Type="SecureString"
    )
    boto3.client("dynamodb").create_table(
        TableName=DELIVERIES_TABLE,
        KeySchema=[{"AttributeName": "delivery_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "delivery_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    os.environ.update(JOB_QUEUE_URL=queue_url, RUNNER_SUBNET_IDS=",".join(subnets))
    config.get_settings.cache_clear()
    boundary.reset()
    harness.world = World(FakeGitHub(), queue_url)
    try:
        yield harness.world
    finally:
        harness.world = None


def traffic_stops(world: World, *, lossy: bool) -> None:
    """The checkpoints (see the module docstring), once the traffic has stopped."""
    world.say("traffic stops: the pending deliveries arrive in order")
    for delivery in list(world.pending):
        world.deliver(delivery, "once")
    world.drain()
    if not lossy:
        world.check(NO_LOSS)
    world.housekeeper()
    world.drain()
    world.check(AFTER_HOUSEKEEPER)


def job_books_hold(harness: Harness, data: st.DataObject, *, lossy: bool) -> None:
    """The property: whatever traffic hypothesis draws, the checkpoints hold."""
    with fresh_world(harness) as world:
        for _ in range(data.draw(st.integers(4, MAX_STEPS), label="steps")):
            world.step(data, lossy)
        traffic_stops(world, lossy=lossy)


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    from moto import mock_aws

    from jitrunners.github import client as github_client

    for key in ("RUNNER_TEMPLATES_PARAM", "WEBHOOK_SECRET_PARAM", "GITHUB_APP_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
        "JITRUNNERS_PREFIX": "jitrunners",
        "RUNNER_TEMPLATES": json.dumps(TEMPLATES),
        "WEBHOOK_SECRET": SECRET,
        "GITHUB_TOKEN_PARAM": "/jitrunners/github-token",
        "ALLOWED_REPOS": ",".join(REPOS),  # what the reconciliation pass asks GitHub about
        "START_DELAY_S": "0",
        "DELIVERIES_TABLE": DELIVERIES_TABLE,  # delivery ids and launches claimed, as deployed
        "JOB_QUEUE_URL": "",
        "RUNNER_SUBNET_IDS": "",
    }.items():
        monkeypatch.setenv(key, value)
    _reset_process_caches()
    github_client.get_client.cache_clear()
    with mock_aws() as aws, responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        harness = Harness(aws)
        for method in ("GET", "POST", "DELETE"):
            http.add_callback(method, re.compile(re.escape(API) + r"/.*"), harness.answer)
        client("ssm").meta.events.register(
            "before-call.ssm.GetCommandInvocation", harness.command_status
        )
        yield harness
    _reset_process_caches()
    github_client.get_client.cache_clear()


# JOB_BOOKS_EXPLORE=1 draws fresh traffic each run (with --hypothesis-seed to replay one).
COMMON = settings(
    derandomize=not os.environ.get("JOB_BOOKS_EXPLORE"),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
# Examples per property (each a fresh moto world, about half a second); raise them to explore.
EXAMPLES = int(os.environ.get("JOB_BOOKS_EXAMPLES", "20"))
REMOVAL_EXAMPLES = int(os.environ.get("JOB_BOOKS_REMOVAL_EXAMPLES", "100"))  # stops at the first
MAX_STEPS = int(os.environ.get("JOB_BOOKS_MAX_STEPS", "30"))


@settings(COMMON, max_examples=EXAMPLES)
@given(data=st.data())
def test_no_delivery_lost_every_queued_job_has_a_runner_once_the_queue_is_drained(
    harness: Harness, data: st.DataObject
) -> None:
    job_books_hold(harness, data, lossy=False)


@settings(COMMON, max_examples=EXAMPLES)
@given(data=st.data())
def test_deliveries_lost_every_queued_job_has_a_runner_after_one_housekeeper_pass(
    harness: Harness, data: st.DataObject
) -> None:
    job_books_hold(harness, data, lossy=True)


# --- each piece is needed ----------------------------------------------------------------------


def counterexample_search(harness: Harness, *, lossy: bool, examples: int) -> Callable[[], None]:
    """The same property as above, searched without shrinking: the first failure is raised."""

    @settings(COMMON, max_examples=examples, phases=(Phase.generate,))
    @given(data=st.data())
    def search(data: st.DataObject) -> None:
        job_books_hold(harness, data, lossy=lossy)

    return search


def test_without_the_swap_bookkeeping_a_queued_job_is_left_without_a_runner(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitrunners.lifecycle.provisioning import bookkeeping

    monkeypatch.setattr(bookkeeping, "keep_books", lambda *_a, **_k: "disabled")
    with pytest.raises(AssertionError, match=NO_LOSS):
        counterexample_search(harness, lossy=False, examples=REMOVAL_EXAMPLES)()


def test_without_the_reconciliation_pass_a_lost_delivery_leaves_a_job_without_a_runner(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitrunners.lifecycle.recovery import sweep
    from jitrunners.lifecycle.recovery.reconcile import Decision

    monkeypatch.setattr(sweep, "reconcile", lambda *_a, **_k: Decision())
    with pytest.raises(AssertionError, match=AFTER_HOUSEKEEPER):
        counterexample_search(harness, lossy=True, examples=REMOVAL_EXAMPLES)()


# --- the counterexamples, scripted ---------------------------------------------------------------


def test_a_waiting_jobs_release_in_the_batch_of_its_approval_stops_nothing(
    harness: Harness,
) -> None:
    """Found by the property: `queued`, `waiting`, then (approved) `queued`, delivered in order,
    reach scale-up in one batch; launches are planned first, then the release stopped the new
    runner, and the job stayed queued without one."""
    with fresh_world(harness) as world:
        world.new_job("acme/app", "linux-x64", waiting=True)
        world.approve(world.github.jobs[101])
        traffic_stops(world, lossy=False)


def _steal(world: World) -> None:
    """The runner launched for job 101 takes job 102 before 102's delivery was handled."""
    world.new_job("acme/app", "linux-x64", waiting=False)
    world.new_job("acme/app", "linux-x64", waiting=False)
    world.deliver(world.delivery("queued", 101), "once")
    world.scale_up(10)  # launch
    world.scale_up(10)  # start
    world.take(world.runner_launched_for(101), world.github.jobs[102])


@pytest.mark.parametrize("books", ["kept", "removed"])
def test_a_steal_passes_the_need_on_through_the_swap_bookkeeping(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, books: str
) -> None:
    from jitrunners.lifecycle.provisioning import bookkeeping

    if books == "removed":
        monkeypatch.setattr(bookkeeping, "keep_books", lambda *_a, **_k: "disabled")
    with fresh_world(harness) as world:
        _steal(world)
        if books == "kept":
            traffic_stops(world, lossy=False)
        else:
            with pytest.raises(AssertionError, match=NO_LOSS):
                traffic_stops(world, lossy=False)


@pytest.mark.parametrize("reconciliation", ["kept", "removed"])
def test_a_lost_queued_delivery_is_made_up_for_by_the_reconciliation_pass(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, reconciliation: str
) -> None:
    from jitrunners.lifecycle.recovery import sweep
    from jitrunners.lifecycle.recovery.reconcile import Decision

    if reconciliation == "removed":
        monkeypatch.setattr(sweep, "reconcile", lambda *_a, **_k: Decision())
    with fresh_world(harness) as world:
        world.new_job("acme/app", "linux-x64", waiting=False)
        world.deliver(world.delivery("queued", 101), "lost")
        if reconciliation == "kept":
            traffic_stops(world, lossy=True)
        else:
            with pytest.raises(AssertionError, match=AFTER_HOUSEKEEPER):
                traffic_stops(world, lossy=True)


def test_a_busy_runner_whose_tags_name_a_queued_job_is_booked_by_the_reconciliation_pass(
    harness: Harness,
) -> None:
    """Runner R launched for 101 takes 102, whose `queued` and `in_progress` deliveries are
    lost: R is busy and its tags still say 101, the only queued job. The pass sees 102 running
    on R and sends a `taken` message, whose bookkeeping passes 101's need on."""
    with fresh_world(harness) as world:
        world.new_job("acme/app", "linux-x64", waiting=False)
        world.new_job("acme/app", "linux-x64", waiting=False)
        world.deliver(world.delivery("queued", 101), "once")
        world.deliver(world.delivery("queued", 102), "lost")
        world.scale_up(10)
        world.scale_up(10)
        world.take(world.runner_launched_for(101), world.github.jobs[102])
        world.deliver(world.delivery("in_progress", 102), "lost")
        traffic_stops(world, lossy=True)
