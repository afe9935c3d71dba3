"""A burst of 1,000 queued jobs through the local stack, plain and under faults, side by side.

Run with `make bench` (or `python bench/burst_bench.py --jobs 1000`). Each burst is one local
stack (devstack/: moto, the GitHub simulator, the real handlers behind the shims) with the
in-process agent (`Options(agent="inline")`) and the runner templates of bench/burst_templates.json.
All jobs are queued at once; then, per burst:

* seconds from the burst until every job has an instance launched, has started on a runner, and
  has completed, and until the last cleanup ran (drained);
* control-plane time per job: the handlers' own wall time (`Function.seconds`), per function;
  never the simulated boot or job time. Lambda invocations are serialised in the stack;
* API calls per job: AWS calls of the Lambdas' own boto3 clients counted with botocore hooks
  (requests, operations, retries), GitHub calls of the Lambdas' client (checked against the
  simulator's count);
* retries the faults caused: botocore retries, SQS receives beyond the first, GitHub client
  back-offs, simulator 5xx answers, EC2 capacity refusals.

The LAST line printed is one JSON object with every number; the table above it is for people.
With two cores or more the two bursts run at the same time, one process (one core) each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

TEMPLATES_FILE = Path(__file__).with_name("burst_templates.json")
FAULTS = "ec2-capacity=0.3,github-5xx=0.1"
FUNCTIONS = ("webhook", "scale-up", "scale-down", "redrive", "housekeeper")
EVENT_DRIVEN = ("webhook", "scale-up", "scale-down")
JOB_TAG = "jitrunners:job-id"
# Every AWS service the Lambdas call per job (DynamoDB: the webhook's and the launches' claims).
AWS_SERVICES = ("ec2", "ssm", "sqs", "dynamodb")
QUOTA_START_TIMEOUT_S = 600  # terraform/variables.tf's default start_timeout_s


def _key(event_name: str) -> tuple[str, str]:
    """'before-send.ec2.CreateFleet' -> ('ec2', 'CreateFleet')."""
    _, service, operation = event_name.split(".", 2)
    return service, operation


WEBHOOK_SENDERS = 4  # deliveries the simulator sends at once: GitHub's go out in parallel
# The quota bursts run the housekeeper as a deployment with the module's defaults does
# (housekeeper_schedule, rate(5 minutes)); the plain and faults bursts every 2 minutes, so that
# the faults' lost webhooks are found within the burst.
MODULE_HOUSEKEEPER_EVERY_S = 300.0


class CallMeter:
    """Calls of the Lambdas, attributed to the function whose invocation made them.

    AWS, with botocore hooks on the Lambdas' own clients: `operations` counts API calls (once per
    call, before-parameter-build), `attempts` HTTP requests sent (before-send: each retry too),
    `answered` calls a devstack shim answered before any request went out (the agent's
    GetCommandInvocation and InvalidInstanceId, the ec2-capacity refusal): in AWS each of those
    is one request. So requests = attempts + answered, and botocore retries = requests -
    operations. The hooks are registered first on each operation's own event, ahead of the
    shims', which may answer and so end the handler chain.

    GitHub: the difference of the Lambdas' client's own counter (`GitHubClient.calls`, every HTTP
    attempt by endpoint) over each invocation, and its back-off sleeps (each one a retry).
    Invocations are serialised in the stack, so whatever runs inside one is that function's.

    An invocation's counts land here when it ends, the simulator's and the shims' as its calls
    go out: whoever compares the two reads both with no invocation running
    (`devstack.shims.between_invocations`).
    """

    def __init__(self) -> None:
        self.aws: Counter[tuple[str, str, str, str]] = Counter()  # (fn, service, op, what)
        self.github: Counter[tuple[str, str]] = Counter()  # (fn, "METHOD /template")
        self.github_backoffs: Counter[str] = Counter()
        self.github_backoff_s: Counter[str] = Counter()  # as asked by the client
        self.github_slept_s: Counter[str] = Counter()  # as slept (scaled, see attach_github)
        self.records: Counter[str] = Counter()  # scale-up records by message kind
        self.re_receives: Counter[str] = Counter()  # ... received before (ApproximateReceiveCount)
        self.launched_at: dict[str, float] = {}  # instance id -> when CreateFleet answered
        self.instance_job: dict[str, int] = {}  # instance id -> GitHub job id (its tags)
        self.function = "-"
        self._open: dict[int, list[Any]] = {}  # thread -> [service, operation, requests sent]
        self._lock = threading.Lock()
        self._github_client: Any = None

    def reset(self) -> None:
        with self._lock:
            for counter in (self.aws, self.github, self.records, self.re_receives):
                counter.clear()
            for counter in (self.github_backoffs, self.github_backoff_s, self.github_slept_s):
                counter.clear()

    # ---- AWS
    def attach_aws(self, boto_client: Any) -> None:
        events = boto_client.meta.events
        service = boto_client.meta.service_model.service_id.hyphenize()
        for operation in boto_client.meta.service_model.operation_names:
            events.register_first(f"before-parameter-build.{service}.{operation}", self._operation)
            events.register_first(f"before-send.{service}.{operation}", self._attempt)
            events.register_first(f"after-call.{service}.{operation}", self._closed)
        if service == "ec2":
            events.register_first("before-parameter-build.ec2.CreateFleet", self._fleet_asked)
            events.register_first("after-call.ec2.CreateFleet", self._fleet_answered)
            events.register_first("before-parameter-build.ec2.CreateTags", self._tagged)

    def _operation(self, event_name: str, **_: Any) -> None:
        service, operation = _key(event_name)
        with self._lock:
            self._close(threading.get_ident())  # one that a shim ended by raising
            self.aws[(self.function, service, operation, "operations")] += 1
            self._open[threading.get_ident()] = [service, operation, 0]

    def _attempt(self, event_name: str, **_: Any) -> None:
        service, operation = _key(event_name)
        with self._lock:
            self.aws[(self.function, service, operation, "attempts")] += 1
            current = self._open.get(threading.get_ident())
            if current is not None and current[:2] == [service, operation]:
                current[2] += 1

    def _closed(self, **_: Any) -> None:
        with self._lock:
            self._close(threading.get_ident())

    def _close(self, thread: int) -> None:
        current = self._open.pop(thread, None)
        if current is not None and current[2] == 0:
            self.aws[(self.function, current[0], current[1], "answered")] += 1

    def settle(self) -> None:
        with self._lock:
            for thread in list(self._open):
                self._close(thread)

    def _fleet_asked(self, params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        job = _job_tag(t for spec in params.get("TagSpecifications") or [] for t in spec["Tags"])
        if job is not None:
            context["burst_bench_job"] = job  # a lone launch carries its job's tags

    def _fleet_answered(self, parsed: Mapping[str, Any], context: Mapping[str, Any], **_: Any):
        now, job = time.monotonic(), context.get("burst_bench_job")
        with self._lock:
            for group in parsed.get("Instances") or []:
                for instance_id in group.get("InstanceIds") or []:
                    self.launched_at.setdefault(instance_id, now)
                    if job is not None:
                        self.instance_job[instance_id] = job

    def _tagged(self, params: Mapping[str, Any], **_: Any) -> None:
        job = _job_tag(params.get("Tags") or [])
        if job is not None:
            with self._lock:
                for instance_id in params.get("Resources") or []:
                    self.instance_job[instance_id] = job

    def instances(self) -> int:
        """Instances launched for a job so far."""
        return len(self.instance_job)

    def jobs_launched(self) -> dict[int, float]:
        """GitHub job id -> when its first instance was launched."""
        with self._lock:
            first: dict[int, float] = {}
            for instance_id, job in self.instance_job.items():
                at = self.launched_at.get(instance_id)
                if at is not None:
                    first[job] = min(at, first.get(job, at))
            return first

    # ---- GitHub and the functions
    def attach_github(self, github_client: Any, backoff_percent: float = 100.0) -> None:
        """Count the client's back-offs. The client sleeps `backoff_percent` of each (the stack's
        RETRY_DELAY_PERCENT, Settings.pause): invocations are serialised here, so a back-off
        stalls every function, not one of many concurrent ones as in AWS."""
        self._github_client = github_client
        sleep = github_client._sleep

        def backoff(seconds: float) -> None:
            self.github_backoffs[self.function] += 1
            self.github_backoff_s[self.function] += seconds
            self.github_slept_s[self.function] += seconds * backoff_percent / 100
            sleep(seconds)

        github_client._sleep = backoff

    def attach_function(self, function: Any) -> None:
        handler = function.handler

        def metered(event: Any, context: Any) -> Any:
            if function.key == "scale-up":
                self._count_records(event)
            before = Counter(self._github_client.calls) if self._github_client else Counter()
            self.function = function.key
            try:
                return handler(event, context)
            finally:
                self.settle()
                self.function = "-"
                if self._github_client is not None:
                    for endpoint, n in (self._github_client.calls - before).items():
                        self.github[(function.key, endpoint)] += n

        function.handler = metered

    def _count_records(self, event: Any) -> None:
        for record in event.get("Records") or []:
            try:
                kind = str(json.loads(record["body"]).get("kind", "?"))
            except (ValueError, KeyError, AttributeError):
                kind = "?"
            self.records[kind] += 1
            if int(record.get("attributes", {}).get("ApproximateReceiveCount") or 1) > 1:
                self.re_receives[kind] += 1


def _job_tag(tags: Iterable[Mapping[str, str]]) -> int | None:
    for tag in tags:
        if tag.get("Key") == JOB_TAG and str(tag.get("Value", "")).isdigit():
            return int(tag["Value"])
    return None


class Milestones:
    """When each logical job started on a runner and completed, from the simulator's events."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.started_ids: dict[int, float] = {}
        self.completed: dict[str, float] = {}

    def __call__(self, what: str, job: Any) -> None:
        now = time.monotonic()
        if what == "in_progress":
            self.started.setdefault(job.key, now)
            self.started_ids.setdefault(job.id, now)
        elif what == "completed" and job.conclusion == "success":
            self.completed.setdefault(job.key, now)


def run_burst(
    jobs: int,
    faults: dict[str, float],
    *,
    workdir: Path,
    seed: int = 1,
    job_seconds: float = 1.0,
    timeout_s: float = 900.0,
    housekeeper_every_s: float = 120.0,
    redrive_every_s: float = 30.0,
    quotas: Any = None,
    apps: int = 1,
    jobs_per_run: int = 1,
    scale_up_batch: int = 10,
    scale_up_window_s: float = 0.0,
    webhook_senders: int = WEBHOOK_SENDERS,
    overlap_retries: bool = False,
) -> dict[str, Any]:
    """One burst of `jobs` queued jobs through a fresh local stack; every number of it.

    `quotas` (devstack.quotas.Quotas): the providers' limits enforced, the Lambdas waiting as
    long as they would in AWS (RETRY_DELAY_PERCENT 100: a limit's wait is real time here), and
    the result gains `quotas` (see quota_report)."""
    from devstack.stack import Options, Stack

    workdir.mkdir(parents=True, exist_ok=True)
    lambda_env = {"MAX_RUNNERS": str(2 * jobs + 10)}
    overrides: dict[str, Any] = {}
    rate = quotas.clock_rate if quotas is not None else 1.0
    if quotas is not None:
        # The Lambdas' delays and back-offs are emulated seconds on the providers' clock
        # (devstack/quotas.py ProviderClock): 100 %, as long as in AWS, at its real rate.
        lambda_env["RETRY_DELAY_PERCENT"] = str(round(100 / rate))
        # The schedules and the job queue's visibility timeout, on the same clock.
        housekeeper_every_s, redrive_every_s = housekeeper_every_s / rate, redrive_every_s / rate
        if quotas.github.window_s == 60.0:
            # The Lambdas shape their GitHub calls to the limit the simulator enforces, as a
            # deployment sets github_points_per_minute to its Apps' (their window is a minute).
            lambda_env["GITHUB_POINTS_PER_MINUTE"] = str(quotas.github.points_per_minute)
        # Starts wait for GitHub's budget: the module's default start timeout, not the 120 s of
        # bench/burst_templates.json (with it, a 1,000-job burst's instances timed out while
        # their start messages queued behind launches the secondary limit sent back).
        overrides["start_timeout_s"] = QUOTA_START_TIMEOUT_S
    options = Options(
        jobs=jobs,
        seed=seed,
        job_seconds=job_seconds,
        faults=faults,
        workdir=workdir,
        templates_file=TEMPLATES_FILE,
        lambda_env=lambda_env,
        template_overrides=overrides,
        quotas=quotas,
        agent="inline",
        watch="moto",
        # Under a burst GitHub delivers webhooks in parallel; scale-down's event source polls
        # the teardown queue with the module's default maximum concurrency (5); one SQS poller
        # keeps the job queue's batches whole.
        webhook_senders=webhook_senders,
        overlap_retries=overlap_retries,
        event_workers=5,
        redrive_every_s=redrive_every_s,
        housekeeper_every_s=housekeeper_every_s,
        visibility_timeout_s=max(1, round(30 / rate)),
        max_receive_count=20,  # the Terraform module's default
        jobs_per_run=jobs_per_run,
        scale_up_batch_size=scale_up_batch,
        scale_up_window_s=scale_up_window_s,
    )
    with (workdir / "progress.txt").open("w", encoding="utf-8") as out:
        stack = Stack(options, out=out)
        try:
            _further_apps(stack, apps - 1)
            stack.start()
            meter, milestones = _instrument(stack)
            result = _burst(stack, meter, milestones, timeout_s)
            if rate != 1.0:
                # Seconds on the providers' clock, as the floor is; the real ones beside them.
                result["real_seconds"] = result["seconds"]
                emulated = stack.provider_clock.emulated
                result["seconds"] = {k: round(emulated(v), 1) for k, v in result["seconds"].items()}
                result["clock_rate"] = rate
            result["github_apps"] = apps
            result["jobs_per_run"] = jobs_per_run
            result["scale_up_batch"] = [scale_up_batch, stack.scale_up_window_s()]
            result["jit_configs_by_installation"] = {
                str(k): v for k, v in sorted(stack.sim.jitconfigs_by_installation.items())
            }
        finally:
            stack.stop()
    return result


def _further_apps(stack: Any, count: int) -> None:
    """`count` further GitHub Apps (README "Scaling"), set up as the module would: each App of
    the simulator's, its key in the parameter terraform/secrets.tf creates for it, the module's
    variable (its rendered policies grant the reads) and the Lambdas' GITHUB_EXTRA_APPS."""
    if count <= 0:
        return
    world = stack.world
    added = [stack.sim.add_app() for _ in range(count)]
    names = {str(a.app_id): f"{world.names.github_app_key_param}-{a.app_id}" for a in added}
    world.tfvars_extra = {**world.tfvars_extra, "github_extra_app_ids": list(names)}
    create = world.create

    def create_with_keys(**kwargs: Any) -> None:
        create(**kwargs)
        for app in added:
            world.client("ssm").put_parameter(
                Name=names[str(app.app_id)],
                Value=app.private_key_pem,
                Type="SecureString",
                KeyId=world.kms_key_arn,
            )

    world.create = create_with_keys
    stack.options.lambda_env["GITHUB_EXTRA_APPS"] = json.dumps(
        [{"app_id": app_id, "key_param": name} for app_id, name in names.items()]
    )


def _instrument(stack: Any) -> tuple[CallMeter, Milestones]:
    from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS
    from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider

    from jitrunners.aws.clients import client
    from jitrunners.config import get_settings
    from jitrunners.github.client import get_client

    meter = CallMeter()
    for service in AWS_SERVICES:
        meter.attach_aws(client(service))  # the very clients the adapters use (cached)
    # Parameters (templates, secrets) go through Powertools' own SSM client: created here as
    # Powertools would on first use, so that it is counted too.
    # Where the IAM layer is on, Powertools already reads through the Lambdas' hooked SSM client.
    provider_client = DEFAULT_PROVIDERS.setdefault("ssm", SSMProvider()).client
    if provider_client is not client("ssm"):
        meter.attach_aws(provider_client)
    # The Lambdas' GitHub client (cached per settings): made now, as a warm container has it,
    # reading its App key as scale-up's role where the IAM layer is on.
    scale_up = stack.functions["scale-up"]
    acting = scale_up.principals.bind("scale-up") if scale_up.principals else nullcontext()
    with acting:
        settings = get_settings()
        meter.attach_github(get_client(settings), settings.retry_delay_percent)
    for function in stack.functions.values():
        if function.available:
            meter.attach_function(function)
    milestones = Milestones()
    stack.sim.listeners.append(milestones)
    return meter, milestones


def _burst(stack: Any, meter: CallMeter, milestones: Milestones, timeout_s: float):
    from devstack.shims import between_invocations

    # Counters start now: what the warm-up (clients, token, parameters) did is not the burst's.
    # Read between two invocations, as at the end: the meter takes an invocation's GitHub calls
    # when it ends, the simulator as they arrive, so one running across a reading would be
    # counted by one side only (a scheduled run or a late scale-down event, say).
    with between_invocations():
        meter.reset()
        functions0 = {
            k: (f.invocations, f.errors, f.seconds, f.cpu_seconds)
            for k, f in stack.functions.items()
        }
        cpu0 = time.process_time()
        sim_calls0 = Counter(stack.sim.calls)
        sim_counters0 = Counter(stack.sim.counters)
    started = time.monotonic()
    queued = stack.queue_jobs()
    ids, keys = {j.id for j in queued}, {j.key for j in queued}
    marks: dict[str, float] = {}
    at_all_started: dict[str, Any] | None = None
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        now = time.monotonic()
        # Each job had an instance (its own, or a runner took it): not before there are as
        # many instances and started jobs as jobs, and none is missing from either (set
        # operations, C loops); then the times of every job (a pass in Python).
        if (
            "all_launched" not in marks
            and meter.instances() + len(milestones.started_ids) >= len(ids)
            and not ids - set(meter.instance_job.values()) - milestones.started_ids.keys()
        ):
            launched = _launched(meter.jobs_launched(), milestones.started_ids)
            if ids <= launched.keys():
                marks["all_launched"] = max(launched[i] for i in ids) - started
        if "all_started" not in marks and keys <= milestones.started.keys():
            marks["all_started"] = max(milestones.started[k] for k in keys) - started
            at_all_started = _quota_usage(stack)
        if keys <= milestones.completed.keys():
            marks["all_completed"] = max(milestones.completed[k] for k in keys) - started
            break
        time.sleep(0.25 if now - started < 30 else 0.5)
    # Drained: the last webhook and event handled, the last instance gone (no housekeeper).
    drain_until = min(deadline, time.monotonic() + 180)
    while time.monotonic() < drain_until and not _drained(stack):
        time.sleep(0.5)
    if _drained(stack):
        marks["drained"] = time.monotonic() - started
    # Anything still left is the housekeeper's, as in `make run`.
    settle_until = min(deadline, time.monotonic() + 120)
    while time.monotonic() < settle_until and not stack.settled():
        if stack.bus.idle():
            stack.scheduler.fire(stack.functions["housekeeper"])
        time.sleep(1.0)
    marks["total"] = time.monotonic() - started
    summary = stack.summary()  # asks moto and the simulator; compared with no counter
    # What any message still in the job queue is (by kind, state and receives): none should be.
    summary["queue_left_by_kind"] = stack.world.queue_contents(stack.world.job_queue_url)
    with between_invocations():  # invocations go on (events of the last instances, schedules)
        meter.settle()
        own = meter.jobs_launched()
        coverage = {
            "jobs_launched": len(ids & _launched(own, milestones.started_ids).keys()),
            "jobs_with_own_instance": len(ids & own.keys()),
        }
        result = _report(
            stack, summary, meter, marks, functions0, sim_calls0, sim_counters0, len(queued)
        )
        # The whole process's CPU (handlers, moto, simulator, agents): the stack's own budget.
        result["process_cpu_s"] = round(time.process_time() - cpu0, 1)
        if stack.aws_quotas is not None:
            # Not all started: the floor of what the whole run spent (a lower bound still).
            usage = at_all_started or _quota_usage(stack)
            result["quotas"] = quota_report(stack, usage, len(queued))
    return {**result, **coverage}


# ---------------------------------------------------------------------------------- quotas
def _quota_usage(stack: Any) -> dict[str, Any] | None:
    """What the burst has spent of each limit so far (None: no quotas modeled)."""
    if stack.aws_quotas is None:
        return None
    github = stack.sim.rate_limits
    return {
        "aws_tokens": stack.aws_quotas.tokens_taken(),
        "github_points": dict(github.points_taken),
        "github_requests": dict(github.admitted),
        "github_registrations": dict(github.registrations),
    }


def quota_floors(usage: dict[str, Any], quotas: Any) -> dict[str, float]:
    """Seconds each limit needs at least to admit what the burst spent of it (`usage`, read
    when the last job started), whatever the order of the calls. A token bucket of capacity C
    refilling r per second admits n tokens no sooner than max(0, n - C) / r after the burst's
    start (it starts full); GitHub's points per minute admit at most P points in any w seconds
    (a sliding window), so k windows cover at most k * P points and n points take at least
    (ceil(n / P) - 1) * w (a step: the first P at once, nothing more until the first of them
    leaves the window); an hourly budget of L requests admits n requests within ceil(n / L) - 1
    hours (fixed windows, each starting with a full budget). The burst's floor is the largest:
    its slowest limit."""
    from devstack.quotas import bucket_config

    floors: dict[str, float] = {}
    for name, tokens in usage["aws_tokens"].items():
        bucket = bucket_config(name, quotas.aws)
        if bucket.refill_per_s > 0:
            floors[f"aws {name}"] = max(0.0, tokens - bucket.capacity) / bucket.refill_per_s
    limits = quotas.github
    for who, points in usage["github_points"].items():
        per_window = limits.points_per_minute
        floors[f"github {who} points/min"] = (
            limits.window_s * (math.ceil(points / per_window) - 1) if points else 0.0
        )
    for key, per_hour in (
        ("github_requests", limits.requests_per_hour),
        ("github_registrations", limits.registrations_per_hour),
    ):
        for who, n in usage[key].items():
            floors[f"github {who} {key[7:]}/h"] = (
                limits.hour_s * (math.ceil(n / per_hour) - 1) if n else 0.0
            )
    return floors


def quota_report(stack: Any, at_all_started: dict[str, Any] | None, jobs: int) -> dict[str, Any]:
    """The burst against the modeled limits: every request the providers received (the
    Lambdas' and the instances'), the throttled ones, and the quota-bound floor."""
    aws, github = stack.aws_quotas, stack.sim.rate_limits
    by_api: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    throttled_by_api: Counter[str] = Counter()
    for (function, api), n in aws.requests.items():
        by_api[api] += n
        by_function[function] += n
    for (_, api), n in aws.throttled.items():
        throttled_by_api[api] += n
    lambdas_aws = sum(n for f, n in by_function.items() if f != "instance")
    for endpoint, n in github.requests.items():
        by_api[f"github:{endpoint}"] += n
    for endpoint, n in github.refused_by_endpoint.items():
        throttled_by_api[f"github:{endpoint}"] += n
    github_requests = sum(github.requests.values())
    requests = sum(by_api.values())
    throttled = sum(throttled_by_api.values())
    floors = quota_floors(at_all_started, stack.options.quotas) if at_all_started else {}
    bound = max(floors, key=floors.__getitem__) if floors else None
    return {
        "requests": requests,
        "throttled": throttled,
        "throttled_share": round(throttled / requests, 4) if requests else 0.0,
        "aws_requests_lambdas": lambdas_aws,
        "aws_requests_instances": by_function.get("instance", 0),
        "github_requests": github_requests,
        "github_refused_by_limit": dict(github.refused),
        "github_max_in_flight": github.max_in_flight,
        "github_peak_points": github.peak_points,
        "overdrawn": aws.overdrawn(),
        "aws_throttle_wait_s_by_function": {k: round(v, 1) for k, v in aws.waited_s.items()},
        "by_api": dict(sorted(by_api.items())),
        "throttled_by_api": dict(sorted(throttled_by_api.items())),
        "aws_by_function": dict(sorted(by_function.items())),
        "aws_throttled_by_function": dict(
            sorted(Counter({f: n for (f, _), n in aws.throttled.items()}).items())
        ),
        "floors_s": {k: round(v, 1) for k, v in sorted(floors.items()) if v > 0},
        "floor_s": round(floors[bound], 1) if bound else 0.0,
        "bound_by": bound,
        "jobs": jobs,
    }


def quota_summary(result: dict[str, Any]) -> dict[str, Any]:
    """The one-line interface of `--quotas on` (README "Scaling")."""
    jobs, quotas = result["jobs"], result["quotas"]
    github = {k: v for k, v in result["github"]["by_function"].items() if v}
    started = result["seconds"].get("all_started")
    floor = quotas["floor_s"]
    aws_per_job = _per_job(quotas["aws_requests_lambdas"], jobs)
    return {
        "jobs": jobs,
        "lost": jobs - result["jobs_completed"],
        "seconds_to_all_started": None if started is None else round(started, 1),
        "quota_floor_s": floor,
        "ratio_to_floor": round(started / floor, 2) if started is not None and floor else None,
        "throttled_share": quotas["throttled_share"],
        "calls_per_job": {
            "aws": aws_per_job,
            "github": _per_job(quotas["github_requests"], jobs),
            "by_api": {k: _per_job(v, jobs) for k, v in quotas["by_api"].items()},
            # AWS and GitHub requests by caller ("instance": the runners' own SSM calls).
            "by_function": {
                k: _per_job(quotas["aws_by_function"].get(k, 0) + github.get(k, 0), jobs)
                for k in sorted(set(quotas["aws_by_function"]) | set(github))
            },
        },
        "bound_by": quotas["bound_by"],
        "floors_s": quotas["floors_s"],
        "throttled_by_api": quotas["throttled_by_api"],
        "github_refused_by_limit": quotas["github_refused_by_limit"],
        "aws_throttle_wait_s_by_function": quotas["aws_throttle_wait_s_by_function"],
        "github_apps": result.get("github_apps", 1),
        "jobs_per_run": result.get("jobs_per_run", 1),
        "scale_up_batch": result.get("scale_up_batch", [10, 0.0]),  # records, window (s)
        # Emulated seconds a real one (README "Scaling": the providers' clock); 1: real time.
        "clock_rate": result.get("clock_rate", 1.0),
        "real_seconds_to_all_started": result.get("real_seconds", result["seconds"]).get(
            "all_started"
        ),
        "jit_configs_by_installation": result.get("jit_configs_by_installation", {}),
    }


def _launched(own: dict[int, float], started: dict[int, float]) -> dict[int, float]:
    """Job id -> when it had an instance: its own launched, or a runner took it first. Runners
    are fungible: a job may start on another job's runner, and its own launch is then dropped
    (it is no longer queued); that other job is launched for again when the runner ends.
    `started` is the milestones' live map, written by the simulator's threads: read from a copy
    (one C-level copy under the GIL; iterating it as it grew failed a 10,000-job run)."""
    started = dict(started)
    return {job: min(t, own.get(job, t)) for job, t in started.items()} | {
        job: t for job, t in own.items() if job not in started
    }


def _drained(stack: Any) -> bool:
    world = stack.world
    return (
        stack.sim.wait_webhooks_sent(timeout_s=0.01)  # in_progress and completed too
        and stack.bus.idle()
        and not world.instances_in_process(("pending", "running", "stopping", "stopped"))
        and not world.queue_depth(world.job_queue_url)
    )


def _per_job(value: float, jobs: int, digits: int = 2) -> float:
    return round(value / max(1, jobs), digits)


def _report(
    stack: Any,
    summary: dict[str, Any],
    meter: CallMeter,
    marks: dict[str, float],
    functions0: dict[str, tuple[int, int, float, float]],
    sim_calls0: Counter[str],
    sim_counters0: Counter[str],
    jobs: int,
) -> dict[str, Any]:
    """Every number of the burst, from counters only (`summary` read before), so that it can be
    read while no invocation runs."""
    by_function: dict[str, dict[str, Any]] = {}
    for key in FUNCTIONS:
        function = stack.functions[key]
        invocations0, errors0, seconds0, cpu0 = functions0[key]
        seconds = function.seconds - seconds0
        cpu = function.cpu_seconds - cpu0
        by_function[key] = {
            "invocations": function.invocations - invocations0,
            "errors": function.errors - errors0,
            "seconds": round(seconds, 3),
            "ms_per_job": _per_job(seconds * 1000, jobs),
            "cpu_ms_per_job": _per_job(cpu * 1000, jobs),
            "github_backoff_ms_per_job": _per_job(meter.github_backoff_s[key] * 1000, jobs),
        }
    total_s = sum(f["seconds"] for f in by_function.values())
    event_s = sum(by_function[k]["seconds"] for k in EVENT_DRIVEN)
    backoff_s = sum(meter.github_backoff_s.values())
    slept_s = sum(meter.github_slept_s.values())

    aws = Counter()
    by_service: dict[str, Counter[str]] = {}
    by_operation: dict[str, Counter[str]] = {}
    aws_by_function: Counter[str] = Counter()
    by_function_operation: dict[str, Counter[str]] = {}
    for (function, service, operation, what), n in meter.aws.items():
        by_service.setdefault(service, Counter())[what] += n
        by_operation.setdefault(f"{service}:{operation}", Counter())[what] += n
        aws[what] += n
        if what in ("attempts", "answered"):
            aws_by_function[function] += n
            by_function_operation.setdefault(function, Counter())[f"{service}:{operation}"] += n

    def shaped(counts: Counter[str]) -> dict[str, Any]:
        requests = counts["attempts"] + counts["answered"]
        return {
            "requests": requests,
            "operations": counts["operations"],
            "retries": requests - counts["operations"],
            "answered_by_shims": counts["answered"],
            "requests_per_job": _per_job(requests, jobs),
        }

    github_by_endpoint: Counter[str] = Counter()
    github_by_function: Counter[str] = Counter()
    for (function, endpoint), n in meter.github.items():
        github_by_endpoint[endpoint] += n
        github_by_function[function] += n
    github_requests = sum(github_by_endpoint.values())
    sim_requests = sum((Counter(stack.sim.calls) - sim_calls0).values())
    sim_counters = Counter(stack.sim.counters) - sim_counters0
    aws_requests = aws["attempts"] + aws["answered"]
    capacity = sum(v for k, v in stack.ec2_faults.counters.items() if k.startswith("capacity"))
    return {
        "jobs": jobs,
        "faults": stack.options.faults,
        "seconds": {k: round(v, 2) for k, v in marks.items()},
        "jobs_completed": summary["completed"],
        "instances_launched": len(meter.launched_at),
        "left": {k: summary[k] for k in ("instances_left", "jit_params_left", "runners_left")}
        | {k: summary[k] for k in ("queue_left", "dlq_left")},
        "queue_left_by_kind": summary["queue_left_by_kind"],
        "max_concurrent": summary["max_concurrent"],
        "control_plane_ms_per_job": {
            "all": _per_job(total_s * 1000, jobs),
            "event_driven": _per_job(event_s * 1000, jobs),
            "scheduled": _per_job((total_s - event_s) * 1000, jobs),
            "github_backoff_slept": _per_job(slept_s * 1000, jobs),
            "github_backoff_asked": _per_job(backoff_s * 1000, jobs),
            # As if every GitHub back-off had been slept in full (AWS bills that wait).
            "all_with_full_backoff": _per_job((total_s - slept_s + backoff_s) * 1000, jobs),
        },
        "functions": by_function,
        "calls_per_job": {
            "all": _per_job(aws_requests + github_requests, jobs),
            "aws": _per_job(aws_requests, jobs),
            "github": _per_job(github_requests, jobs),
            # The scheduled functions' calls grow with the burst's duration, not its jobs.
            "event_driven": _per_job(
                sum(aws_by_function[k] + github_by_function[k] for k in EVENT_DRIVEN), jobs
            ),
            "by_function": {
                k: _per_job(aws_by_function[k] + github_by_function[k], jobs) for k in FUNCTIONS
            },
        },
        "aws": shaped(aws)
        | {
            "by_service": {k: shaped(v) for k, v in sorted(by_service.items())},
            "by_operation": {
                k: v["attempts"] + v["answered"] for k, v in sorted(by_operation.items())
            },
            "by_function": {k: aws_by_function[k] for k in FUNCTIONS},
            # Per job, each function's calls by operation ("instance": the runner's own).
            "by_function_operation": {
                function: {k: _per_job(v, jobs) for k, v in sorted(counts.items())}
                for function, counts in sorted(by_function_operation.items())
            },
        },
        "github": {
            "requests": github_requests,
            "requests_seen_by_simulator": sim_requests,
            "retries": sum(meter.github_backoffs.values()),
            "requests_per_job": _per_job(github_requests, jobs),
            "by_endpoint": dict(sorted(github_by_endpoint.items())),
            "by_function": {k: github_by_function[k] for k in FUNCTIONS},
        },
        "retries": {
            "botocore": aws_requests - aws["operations"],
            "sqs_receives_beyond_first": dict(sorted(meter.re_receives.items())),
            "scale_up_records": dict(sorted(meter.records.items())),
            "scale_up_record_failures": stack.event_source.counters["item_failures"],
            "github_client_retries": sum(meter.github_backoffs.values()),
            "github_5xx_answered": sim_counters["fault_5xx"],
            "github_rate_limited": sim_counters["fault_rate_limited"],
            "ec2_capacity_refusals": capacity,
            "dlq_redriven": stack.scheduler.counters["redrive:moved"],
            "agent_not_ready": stack.agent.counters["agent_not_ready"],
        },
    }


# ---------------------------------------------------------------------------------- output
def _ratio(a: float, b: float) -> float | None:
    return round(b / a, 3) if a else None


def _path(*keys: str, default: float = float("nan")) -> Callable[[dict[str, Any]], float]:
    def get(result: dict[str, Any]) -> float:
        value: Any = result
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return default
            value = value[key]
        return value  # type: ignore[no-any-return]

    return get


def _sum(*keys: str) -> Callable[[dict[str, Any]], float]:
    return lambda result: sum(_path(*keys, default={})(result).values())  # type: ignore[union-attr]


# (label, value (None: a heading), ratio shown)
ROWS: list[tuple[str, Callable[[dict[str, Any]], float] | None, bool]] = [
    ("time to all launched (s)", _path("seconds", "all_launched"), True),
    ("time to all started (s)", _path("seconds", "all_started"), True),
    ("time to all completed (s)", _path("seconds", "all_completed"), True),
    ("time to drained (s)", _path("seconds", "drained"), True),
    ("jobs completed", _path("jobs_completed"), False),
    ("instances launched", _path("instances_launched"), True),
    ("control-plane ms/job", _path("control_plane_ms_per_job", "all"), True),
    ("  event-driven", _path("control_plane_ms_per_job", "event_driven"), True),
    *[(f"    {k}", _path("functions", k, "ms_per_job"), True) for k in EVENT_DRIVEN],
    ("  scheduled", _path("control_plane_ms_per_job", "scheduled"), True),
    *[(f"    {k}", _path("functions", k, "ms_per_job"), True) for k in FUNCTIONS[3:]],
    (
        "  of it GitHub back-off, slept",
        _path("control_plane_ms_per_job", "github_backoff_slept"),
        True,
    ),
    (
        "  GitHub back-off, asked for",
        _path("control_plane_ms_per_job", "github_backoff_asked"),
        True,
    ),
    (
        "control-plane ms/job, full back-off",
        _path("control_plane_ms_per_job", "all_with_full_backoff"),
        True,
    ),
    ("calls/job", _path("calls_per_job", "all"), True),
    ("  event-driven", _path("calls_per_job", "event_driven"), True),
    ("  AWS requests", _path("calls_per_job", "aws"), True),
    *[
        (f"    {s}", _path("aws", "by_service", s, "requests_per_job", default=0.0), True)
        for s in AWS_SERVICES
    ],
    ("  GitHub requests", _path("calls_per_job", "github"), True),
    ("  by function", None, False),
    *[(f"    {k}", _path("calls_per_job", "by_function", k), True) for k in FUNCTIONS],
    ("retries: botocore", _path("retries", "botocore"), False),
    ("retries: SQS receives beyond first", _sum("retries", "sqs_receives_beyond_first"), False),
    ("retries: GitHub client", _path("retries", "github_client_retries"), False),
    ("faults: GitHub 5xx answered", _path("retries", "github_5xx_answered"), False),
    ("faults: EC2 capacity refusals", _path("retries", "ec2_capacity_refusals"), False),
    ("scale-up record failures", _path("retries", "scale_up_record_failures"), False),
    ("DLQ messages redriven", _path("retries", "dlq_redriven"), False),
]


def table(plain: dict[str, Any], faulty: dict[str, Any], faults_text: str) -> str:
    lines = [
        f"burst of {plain['jobs']} jobs; right column with --faults {faults_text}",
        f"{'':38} {'plain':>10} {'faults':>10} {'ratio':>7}",
    ]
    for label, value, with_ratio in ROWS:
        if value is None:
            lines.append(label)
            continue
        a, b = value(plain), value(faulty)
        ratio = _ratio(a, b) if with_ratio else None
        lines.append(
            f"{label:38} {_fmt(a):>10} {_fmt(b):>10} {'' if ratio is None else f'{ratio:.2f}':>7}"
        )
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.2f}"


def ratios(plain: dict[str, Any], faulty: dict[str, Any]) -> dict[str, Any]:
    """faults / plain for calls per job and control-plane time per job."""
    return {
        "calls_per_job": {
            k: _ratio(plain["calls_per_job"][k], faulty["calls_per_job"][k])
            for k in ("all", "event_driven", "aws", "github")
        },
        "control_plane_ms_per_job_with_full_backoff": _ratio(
            plain["control_plane_ms_per_job"]["all_with_full_backoff"],
            faulty["control_plane_ms_per_job"]["all_with_full_backoff"],
        ),
        "control_plane_ms_per_job": {
            k: _ratio(plain["control_plane_ms_per_job"][k], faulty["control_plane_ms_per_job"][k])
            for k in ("all", "event_driven")
        },
        "seconds": {
            k: _ratio(plain["seconds"].get(k, 0.0), faulty["seconds"].get(k, 0.0))
            for k in ("all_launched", "all_completed")
        },
    }


def main(argv: list[str] | None = None) -> int:
    from devstack.faults import parse_faults

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--faults", default=FAULTS, help="the second burst's faults (k=v,...)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--job-seconds", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=900.0, help="per burst, seconds")
    parser.add_argument(
        "--serial",
        action="store_true",
        help="one burst after the other in this process (default with 2+ cores: both at once, "
        "one process and so one core each)",
    )
    parser.add_argument("--only", choices=BURSTS, help=argparse.SUPPRESS)  # one burst's JSON
    parser.add_argument(
        "--quotas",
        choices=("on", "off"),
        default="off",
        help="on: one burst under the providers' modeled quotas (devstack/quotas.py), ending "
        'with the quota summary line (README "Scaling"); off: plain and faults side by side',
    )
    parser.add_argument(
        "--quota-scale",
        type=float,
        default=1.0,
        help="with --quotas on: every bucket and budget times this (default 1: AWS's and "
        "GitHub's documented values)",
    )
    parser.add_argument(
        "--github-hourly",
        type=int,
        default=LARGE_ORG_HOURLY,
        help="with --quotas on: the App installation's primary limit, requests per hour "
        f"(default {LARGE_ORG_HOURLY}, a large organization's; GitHub's minimum is 5000)",
    )
    parser.add_argument(
        "--apps",
        type=int,
        default=1,
        help="with --quotas on: GitHub Apps generating JIT configs (GITHUB_EXTRA_APPS: the "
        "primary and N-1 further ones, each with its own installation and budgets)",
    )
    parser.add_argument(
        "--jobs-per-run",
        type=int,
        default=1,
        help="with --quotas on: jobs of one workflow run (a matrix), in a row (default 1: a run "
        "per job); launches of one run are checked with one listing of its jobs",
    )
    parser.add_argument(
        "--scale-up-batch",
        type=int,
        default=10,
        help="with --quotas on: scale-up's records per batch (Terraform scale_up_batch_size; "
        "default 10, the module's)",
    )
    parser.add_argument(
        "--scale-up-window",
        type=float,
        default=0.0,
        help="with --quotas on: scale-up's batching window, seconds (Terraform "
        "scale_up_batching_window_s; default 0, the module's; at least 1 above 10 records, as "
        "the module sets it)",
    )
    parser.add_argument(
        "--housekeeper-every",
        type=float,
        default=MODULE_HOUSEKEEPER_EVERY_S,
        help="with --quotas on: seconds between the housekeeper's passes (default "
        f"{MODULE_HOUSEKEEPER_EVERY_S:g}: the module's housekeeper_schedule, rate(5 minutes))",
    )
    parser.add_argument(
        "--webhook-senders",
        type=int,
        default=WEBHOOK_SENDERS,
        help=f"with --quotas on: deliveries the GitHub simulator sends at once (default "
        f"{WEBHOOK_SENDERS})",
    )
    parser.add_argument(
        "--overlap-retries",
        action="store_true",
        help="with --quotas on: an invocation waiting out a throttle's back-off lets the next "
        "one run, as in AWS (the stack otherwise runs invocations one at a time; README "
        '"Scaling": at 10,000 jobs the webhooks then accept jobs faster than their runners start)',
    )
    parser.add_argument(
        "--clock-rate",
        type=float,
        default=1.0,
        help="with --quotas on: the providers' clock runs this many emulated seconds a real one "
        "(1-10; default 1: real time). Quotas, the Lambdas' delays and the schedules run on it, "
        'and seconds are reported on it (README "Scaling")',
    )
    args = parser.parse_args(argv)
    if args.quotas == "on":
        return _quota_burst(args)
    faults = {"plain": {}, "faults": parse_faults(args.faults)}
    if args.only:
        print(json.dumps(_one(args.only, faults[args.only], args)), flush=True)
        return 0
    started = time.monotonic()
    if args.serial or (os.cpu_count() or 1) < 2:
        results = {name: _one(name, faults[name], args) for name in BURSTS}
    else:
        results = _at_once(args)
    print(f"both bursts: {time.monotonic() - started:.0f} s of wall time", file=sys.stderr)
    print(table(results["plain"], results["faults"], args.faults))
    report = {
        "jobs": args.jobs,
        "faults": args.faults,
        "plain": results["plain"],
        "with_faults": results["faults"],
        "ratio_faults_to_plain": ratios(results["plain"], results["faults"]),
    }
    print(json.dumps(report, separators=(",", ":")), flush=True)
    complete = all(r["jobs_completed"] == args.jobs for r in results.values())
    return 0 if complete else 1


BURSTS = ("plain", "faults")
# An App installation on an organization gets 5,000 requests per hour plus 50 per repository and
# per user beyond 20 of each, at most 12,500 (15,000 on Enterprise Cloud): the organizations whose
# bursts reach thousands of jobs have the most.
LARGE_ORG_HOURLY = 12500


def _quota_burst(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from devstack.quotas import Quotas

    quotas = Quotas()
    quotas = Quotas(quotas.aws, replace(quotas.github, requests_per_hour=args.github_hourly))
    if args.quota_scale != 1.0:
        quotas = quotas.scaled(args.quota_scale)
    quotas = replace(quotas, clock_rate=args.clock_rate)
    started = time.monotonic()
    result = run_burst(
        args.jobs,
        {},
        workdir=ROOT / ".devstack" / "bench" / "burst-quotas",
        seed=args.seed,
        job_seconds=args.job_seconds,
        timeout_s=args.timeout,
        quotas=quotas,
        apps=args.apps,
        jobs_per_run=args.jobs_per_run,
        scale_up_batch=args.scale_up_batch,
        scale_up_window_s=args.scale_up_window,
        webhook_senders=args.webhook_senders,
        housekeeper_every_s=args.housekeeper_every,
        overlap_retries=args.overlap_retries,
    )
    print(f"quota burst: {time.monotonic() - started:.0f} s of wall time", file=sys.stderr)
    print(json.dumps(result, separators=(",", ":")), file=sys.stderr)
    summary = quota_summary(result)
    print(json.dumps(summary, separators=(",", ":")), flush=True)
    return 0 if summary["lost"] == 0 else 1


def _one(name: str, faults: dict[str, float], args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    result = run_burst(
        args.jobs,
        faults,
        workdir=ROOT / ".devstack" / "bench" / f"burst-{name}",
        seed=args.seed,
        job_seconds=args.job_seconds,
        timeout_s=args.timeout,
    )
    print(f"{name} burst: {time.monotonic() - started:.0f} s of wall time", file=sys.stderr)
    return result


def _at_once(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Both bursts at the same time, each in its own process: a stack is one process bound by
    one interpreter lock, so two take two cores, and both see the same machine meanwhile."""
    common = ["--jobs", str(args.jobs), "--faults", args.faults, "--seed", str(args.seed)]
    common += ["--job-seconds", str(args.job_seconds), "--timeout", str(args.timeout)]
    children = {
        name: subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--only", name, *common],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in BURSTS
    }
    results = {}
    for name, child in children.items():
        output, _ = child.communicate()
        lines = [line for line in output.splitlines() if line.startswith("{")]
        if child.returncode or not lines:
            raise RuntimeError(f"the {name} burst failed (exit {child.returncode})")
        results[name] = json.loads(lines[-1])
    return results


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
