"""The whole pipeline in one process: moto, the GitHub simulator, shims and the real handlers."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from devstack.agent import AgentShim
from devstack.aws_world import ACCOUNT, REGION, TEMPLATES_FILE, AwsWorld, load_tf_templates
from devstack.boot_model import BootModel
from devstack.faults import Ec2Faults
from devstack.github_sim import Faults, GitHubSim, JobTimings, SimJob
from devstack.inline_agent import InlineAgent
from devstack.progress import JobTable, Progress
from devstack.quotas import AwsQuotas, GitHubQuotas, ProviderClock, Quotas, acting_as
from devstack.runner_dist import RunnerDist
from devstack.shims import (
    ApiGatewayShim,
    EventBus,
    Function,
    Scheduler,
    SqsEventSource,
    ec2_event,
    sns_event,
    step_out_while_retrying,
)
from devstack.startup import STARTUP_TIMEOUT_S, Startup

REPOS = ("acme/widgets", "acme/gadgets")
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
# `steal`: labels that several templates match (the first routes, any linux runner may take it).
SHARED_LABELS = ("self-hosted", "linux")
# Sizing labels the jobs of a sized template ask for in turn (README "Sizing jobs"): each within
# devstack/runner_templates.json's policy, so each launches by instance requirements.
SIZES = (("cpu=4", "ram=16"), ("family=c7i", "cpu=8"), ("cpu=2",), ("ram=8", "disk=40"))
# Sizing labels the webhook refuses (outside the policy, not allowed, malformed): such a job is
# answered 202 with the reason and nothing is launched; its simulated user then cancels it.
REFUSED_SIZES = (("cpu=64",), ("gpu=1",), ("ram=lots",))
RECONCILIATION_LAUNCH = "reconciliation launch"  # the housekeeper's log message per launch
TAG_POOL = "jitrunners:pool"  # jitrunners.aws.fleet.TAG_POOL: a warm pool's member, and its kind
TAG_JOB_ID = "jitrunners:job-id"
PATHS = ("cold", "stopped", "hot")  # jitrunners.models.runner_path
# What must be 0 once a run is over (the summary's keys).
LEFT_KEYS = (
    "instances_left", "jit_params_left", "runners_left", "queue_left", "dlq_left", "pool_left",
)  # fmt: skip
# The Lambdas' built-in delays AWS runs with (config.Settings): scaled with the boot model's clock.
START_DELAY_S = 20


@dataclass(frozen=True)
class JobRecord:
    """One attempt of one job, as it ended (or stands): who ran it, and why that runner existed."""

    job_id: int
    run_attempt: int
    repo: str
    name: str
    labels: tuple[str, ...]
    template: str | None  # the first template whose labels contain the job's (the routing rule)
    status: str
    conclusion: str | None
    runner: str | None  # the instance id (= runner name) that ran it
    runner_launched_for: int | None  # the job id that runner's instance was launched for
    stolen: bool  # `steal` handed it to a runner launched for another job

    @property
    def swap(self) -> bool:
        """Run by a runner of ours launched for another job (DESIGN 6b)."""
        return self.runner_launched_for is not None and self.runner_launched_for != self.job_id


@dataclass(frozen=True)
class InstanceRecord:
    """One instance the stack saw, with wall-clock times (time.time()) as the watcher saw them."""

    instance_id: str
    template: str
    market: str
    launched_at: float
    terminated_at: float | None
    launched_for: int | None  # its first `jitrunners:job-id` tag
    runner_started_at: float | None  # when its runner command reached the agent (None: never)
    jobs_run: tuple[tuple[int, int], ...]  # (job id, run attempt) its runner took

    @property
    def took_job(self) -> bool:
        return bool(self.jobs_run)

    @property
    def lifetime_s(self) -> float | None:
        return None if self.terminated_at is None else self.terminated_at - self.launched_at


@dataclass
class Options:
    jobs: int = 6
    templates: list[str] | None = None
    seed: int = 1
    job_seconds: float = 1.0
    faults: dict[str, float] = field(default_factory=dict)
    verbose: bool = False
    timeout_s: float | None = None  # the run's bound, counted from when the stack is up
    startup_timeout_s: float = STARTUP_TIMEOUT_S  # start-up's own bound
    redrive_every_s: float = 4.0
    housekeeper_every_s: float = 6.0
    workdir: Path | None = None
    prefix: str = "jitrunners"
    # The module's default (terraform/variables.tf): above start_timeout_s / back-off, so a start
    # that waits for a slow SSM agent does not go round the DLQ (5, the module's minimum, did).
    max_receive_count: int = 20
    visibility_timeout_s: int = 6
    ssm_offline_s: float = 4.0  # how late an `ssm-offline` agent comes online
    # The first N job messages crash scale-up whenever received, until SQS moves them to the DLQ
    # (a handler that times out on them): the DLQ and the redrive, whatever the thread timing.
    poisoned_messages: int = 0
    # Applied to every runner template, e.g. {"start_timeout_s": 8, "idle_timeout_s": 4}: short
    # timeouts keep the runs of the job-level faults (approval, slow-boot) to seconds.
    template_overrides: dict[str, Any] = field(default_factory=dict)
    # When the simulated users act (cancel, approve, re-run); None: fitted to the templates.
    job_timings: JobTimings | None = None
    view: str = "lines"  # "lines": one line per state change; "table": redrawn (a terminal)
    # For bursts of hundreds of jobs (bench/burst_bench.py); the defaults are what `make run` does.
    templates_file: Path | None = None  # runner templates; None: devstack/runner_templates.json
    lambda_env: dict[str, str] = field(default_factory=dict)  # extra Lambda env (MAX_RUNNERS=...)
    agent: str = "script"  # "script": start-runner.sh per instance; "inline": devstack/inline_agent
    watch: str = "api"  # instances seen by DescribeInstances ("api") or in moto's state ("moto")
    webhook_senders: int = 1  # webhooks the simulator delivers at once (a burst's: in parallel)
    # Scale-up's records per batch on the job queue (Terraform `scale_up_batch_size`): 1 gives
    # every job its own invocation, so its own launch call.
    scale_up_batch_size: int = 10
    # ... and its batching window (Terraform `scale_up_batching_window_s`): seconds a batch may
    # wait to fill once its first record is in; at least 1 above 10 records, as the module sets
    # it (terraform/functions.tf).
    scale_up_window_s: float = 0.0
    # Scale-down's event source mapping on the teardown queue (terraform/functions.tf): pollers
    # at once (maximum concurrency), records per batch and the batching window.
    event_workers: int = 1
    # An invocation waiting out botocore's back-off steps out of its turn (shims.stepped_out).
    overlap_retries: bool = False
    teardown_batch_size: int = 50
    teardown_window_s: float = 1.0
    # Every AWS call of the Lambdas authorized against the module's own policies (devstack/iam).
    iam: bool = True
    # Module resources/statements to leave out, to show what then fails (tests of the IAM layer):
    # launch-template resource types not tagged at creation.
    untagged_launch_resources: tuple[str, ...] = ()
    # ... and statements (by Sid) left out of a function's policies: {"scale-down": ("Sid",)}.
    iam_without: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # What the `jitrunners` CLI reads (devstack/cloud.py): the functions, the event source
    # mapping and log groups in moto, and the Lambdas' log lines shipped to CloudWatch Logs.
    cloud: bool = False
    # Extra jobs on the sized template (devstack/runner_templates.json): with sizing labels it
    # admits, and with labels it refuses (`make run ARGS=--sizing`: 2 and 2); 0: none.
    sized_jobs: int = 0
    refused_sized_jobs: int = 0
    # The providers' quotas (devstack/quotas.py): AWS API token buckets on the Lambdas' and the
    # instances' clients, GitHub's rate limits in the simulator; None: unlimited.
    quotas: Quotas | None = None
    # The latency model (devstack/boot_model.py): how long boots, starts and runner connects take,
    # on a clock scaled by its time_scale; None: its defaults, drawn from `seed`.
    boot_model: BootModel | None = None
    # A warm pool for every template the run's jobs go to, e.g. {"hot": 3, "stopped": 3}
    # (`--pool`): filled before the jobs are sent, drained once they are done.
    pool: dict[str, int] | None = None
    # Real seconds between two queued jobs (0: all at once), e.g. a pool's refill rate.
    job_spacing_s: float = 0.0
    # Jobs of one workflow run (a matrix): consecutive jobs share a run, its repository and its
    # template; the runs go round the templates and repositories. 1: a run per job.
    jobs_per_run: int = 1
    # Jobs queued once every earlier one has finished: a second wave, which meets the state the
    # first left behind (e.g. an open spot breaker), on the run's templates; 0: none.
    later_jobs: int = 0
    # ... and once the Lambdas have logged this (e.g. "spot breaker opened": some of what the
    # first wave caused is recorded after its jobs finished); "": no such wait.
    later_after_log: str = ""


NOT_TERMINATED = frozenset({"pending", "running", "shutting-down", "stopping", "stopped"})
FULL_WATCH_EVERY = 100  # watcher rounds (0.3 s each) between two describes of every instance


def _flatten(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for reservation in answer["Reservations"] for i in reservation["Instances"]]


class Stack:
    def __init__(
        self, options: Options, out: TextIO = sys.stdout, status_out: TextIO | None = None
    ) -> None:
        self.options = options
        self.out = out
        self.status_out = status_out or out  # start-up lines (`--serve`: stderr, beside its JSON)
        self.started = time.monotonic()
        self.startup_s: float | None = None  # from here to the stack being up
        table = JobTable(out, self.started) if options.view == "table" else None
        self.progress = Progress(out, self.started, table)
        self.workdir = options.workdir or Path(tempfile.mkdtemp(prefix="devstack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "lambdas.log"
        # reconciled_launches(): how far the log was read, and what it counted so far.
        self._reconciled_read, self._reconciled = 0, 0
        self._log_file: TextIO | None = None
        faults = options.faults
        if options.agent not in ("script", "inline") or options.watch not in ("api", "moto"):
            raise ValueError(f"agent {options.agent!r} or watch {options.watch!r} unknown")
        self.boot_model = options.boot_model or BootModel(seed=options.seed)
        templates = load_tf_templates(options.templates_file or TEMPLATES_FILE)
        templates = [{**t, **options.template_overrides} for t in templates]
        self.pool_notes: list[str] = []
        if options.pool:
            run = set(self._run_templates(templates))
            templates = [
                _room_for_pool(t, options.pool, self.pool_notes) if t["name"] in run else t
                for t in templates
            ]
        self.world = AwsWorld(
            prefix=options.prefix,
            tf_templates=templates,
            max_receive_count=options.max_receive_count,
            visibility_timeout_s=options.visibility_timeout_s,
            launch_template_tagged=tuple(
                kind
                for kind in ("instance", "volume", "network-interface")
                if kind not in options.untagged_launch_resources
            ),
        )
        self.enforcer: Any = None
        self.event_source_enforcer: Any = None
        self.teardown_source_enforcer: Any = None
        self.sim = GitHubSim(
            seed=options.seed,
            webhook_senders=options.webhook_senders,
            faults=Faults(
                github_5xx=faults.get("github-5xx", 0.0),
                github_rate_limit=faults.get("github-rate-limit", 0.0),
                lost_webhooks=faults.get("lost-webhooks", 0.0),
                duplicate_webhooks=faults.get("duplicate-webhooks", 0.0),
                cancel=faults.get("cancel", 0.0),
                approval=faults.get("approval", 0.0),
                rerun=faults.get("rerun", 0.0),
                steal=faults.get("steal", 0.0),
            ),
            timings=options.job_timings or self._job_timings(),
        )
        self.ec2_faults = Ec2Faults(
            capacity=faults.get("ec2-capacity", 0.0),
            throttle=faults.get("ec2-throttle", 0.0),
            seed=options.seed,
        )
        self.aws_quotas: AwsQuotas | None = None
        # The time the providers' limits run on (devstack/quotas.py ProviderClock).
        self.provider_clock = ProviderClock(options.quotas.clock_rate if options.quotas else 1.0)
        if options.quotas is not None:
            self.aws_quotas = AwsQuotas(
                buckets=dict(options.quotas.aws), clock=self.provider_clock.monotonic
            )
            self.sim.rate_limits = GitHubQuotas(
                limits=options.quotas.github, clock=self.provider_clock.time
            )
        self._rng = random.Random(options.seed)
        self.functions: dict[str, Function] = {}
        self.counters: Counter[str] = Counter()
        self.seen_instances: dict[str, dict[str, Any]] = {}
        self.launch_times: dict[str, float] = {}
        self.terminate_times: dict[str, float] = {}
        # Instance id -> the job id it was launched for (its `jitrunners:launched-for` tag, else
        # its first `jitrunners:job-id` tag; a swap re-tags the latter later).
        self.launched_for: dict[str, int] = {}
        # `steal`'s hook: the job a runner's instance was launched for, from its name.
        self.sim.launched_for = lambda name: self.launched_for.get(_instance_of(name))
        self.max_concurrent = 0
        self.max_per_template: Counter[str] = Counter()
        self._interrupted: set[str] = set()  # logical jobs the spot-interrupt fault has seen
        self.refused_jobs: dict[int, SimJob] = {}  # jobs with refused sizing labels
        self.queued_total = options.jobs  # with the sized and refused ones, once queued
        self.refused_cancelled: set[int] = set()
        self._interrupt_lock = threading.Lock()
        self._watch_rounds = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.apigw: ApiGatewayShim | None = None
        self.bus: EventBus | None = None
        self.agent: AgentShim | None = None
        self.runner_dist = RunnerDist(self.workdir / "runner-dist", job_seconds=options.job_seconds)
        self.event_source: SqsEventSource | None = None
        self.teardown_source: SqsEventSource | None = None
        self.scheduler = Scheduler()
        self.shipper: Any = None  # devstack.cloud.LogShipper with `cloud`

    # ------------------------------------------------------------------ start / stop
    def start(self) -> Stack:
        """Bring every piece up, saying what is up and when; StartupError names a piece that
        does not come up within `startup_timeout_s`."""
        # The handlers read the process environment; it is put back as it was by stop().
        self._saved_env = dict(os.environ)
        boot = Startup(self._status, self.options.startup_timeout_s)
        self._status("starting moto (AWS), the GitHub simulator, the shims and the Lambda handlers")
        boot.parallel(
            {
                "moto": self.world.start,
                "GitHub simulator": self.sim.start,
                # Instances boot from the user data terraform renders, with the runner from a
                # local mirror.
                "runner mirror": self.runner_dist.start,
            },
            {
                "moto": lambda world: f"moto on {world.endpoint_url.removeprefix('http://')}",
                "GitHub simulator": lambda sim: (
                    f"GitHub simulator on {sim.url.removeprefix('http://')}"
                ),
                "runner mirror": lambda dist: "runner mirror (the simulated runner's tarball) up",
            },
        )
        # Each first request to a moto service builds its backend: all three at once, before the
        # world is created and the Lambdas' first calls would wait for them one by one.
        boot.parallel(
            {
                f"{name} backend": functools.partial(self.world.warm, name.lower())
                for name in ("EC2", "SQS", "SSM")
            }
        )
        boot.step(
            "AWS world",
            lambda: self.world.create(
                webhook_secret=self.sim.webhook_secret,
                github_app_key=self.sim.private_key_pem,
                runner=self.runner_dist.tfvars(),
            ),
            "AWS world created from the module's rendered documents: KMS key, runner role and "
            "profile, VPC, launch templates (user data), queues, parameters",
        )
        env = self.world.env(
            github_api_url=self.sim.url,
            github_app_id=str(self.sim.app_id),
            # Instances here boot on the boot model's clock: scale-up's delays and back-offs
            # shrink with it, to 1 s and 5 % at the least (SQS delays are whole seconds).
            START_DELAY_S=str(max(1, round(START_DELAY_S * self.boot_model.time_scale))),
            RETRY_DELAY_PERCENT=str(min(100, max(5, round(100 * self.boot_model.time_scale)))),
            CHECK_JOB_QUEUED=os.environ.get("CHECK_JOB_QUEUED", "true"),
            RERUN_INTERRUPTED_JOBS="true",
            MAX_RERUNS="3",
            MAX_REDRIVES="5",
            # Jobs here are handled within seconds: the reconciliation pass may act on a queued
            # job after 10 s rather than the 2 minutes a real webhook path is given.
            RECONCILE_GRACE_S="10",
            # A finished runner's status event reaches scale-down within the teardown source's
            # batching window: the housekeeper leaves such an end to it this long.
            TEARDOWN_GRACE_S=str(max(3, round(3 * self.options.teardown_window_s))),
            # Every third pass lists every ended instance, as the default does at AWS's default
            # schedule (15 minutes, passes every 5).
            HOUSEKEEPER_FULL_LISTING_S=str(max(1, round(3 * self.options.housekeeper_every_s))),
            POWERTOOLS_PARAMETERS_MAX_AGE="300",
            POWERTOOLS_LOG_LEVEL="DEBUG" if self.options.verbose else "INFO",
        )
        env.update(self.options.lambda_env)
        if self.options.pool:
            boot.step(
                "warm pools",
                self._write_pools,
                f"warm pool {self._pool_text()} on {', '.join(self._run_templates())} "
                "(the runner-template parameter)",
            )
        if self.options.cloud:
            from devstack import cloud

            boot.step(
                "CLI view",
                lambda: cloud.register(self.world, env),
                "Lambda functions, event source mapping and log groups registered (the CLI's view)",
            )
        os.environ.update(env)
        if not self.options.verbose:
            os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        _reset_lambda_caches()
        # After the environment: the handlers' modules read it when imported.
        self.functions = boot.step(
            "Lambda handlers", self._import_functions, "Lambda handlers imported"
        )
        self._route_lambda_logs()
        boot.step(
            "shims",
            self._start_shims,
            "shims up: API Gateway, SQS event source, EventBridge, SSM agent, schedules",
        )
        if self.provider_clock.rate != 1.0 and self.functions["scale-up"].available:
            self._github_on_provider_clock()
        self.startup_s = round(time.monotonic() - self.started, 1)
        self._status(f"stack up in {self.startup_s:.1f} s")
        if self.progress.table is not None:
            self.progress.table.start()
        return self

    def _status(self, text: str) -> None:
        self.progress.note(text, self.status_out)

    # ------------------------------------------------------------------ warm pools (`--pool`)
    def _run_templates(self, templates: list[dict[str, Any]] | None = None) -> list[str]:
        """The templates the run's jobs go to (queue_jobs): named, or all but the sized one."""
        templates = self.world.tf_templates if templates is None else templates
        return self.options.templates or [t["name"] for t in templates if not t.get("sizing")]

    def _pool_text(self, pool: dict[str, int] | None = None) -> str:
        pool = self.options.pool if pool is None else pool
        return ",".join(f"{k}={v}" for k, v in (pool or {}).items())

    def _write_pools(self, pool: dict[str, int] | None = None) -> None:
        """Set the run's templates' `pool` in the runner-template parameter the Lambdas read
        (as `jitrunners drain` edits it): validated as the Lambdas load it, then written."""
        from jitrunners.config import parse_templates

        pool = dict(self.options.pool or {}) if pool is None else pool
        ssm = self.world.client("ssm")
        name = self.world.names.templates_param
        document = json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"])
        run = set(self._run_templates())
        for entry in document:
            if entry.get("name") in run:
                # Hot members register with an organization before any job names one: the
                # simulator's (the Lambdas' ALLOWED_OWNERS is not set here).
                entry["pool"] = {**pool, "owner": REPOS[0].split("/")[0]}
        text = json.dumps(document, separators=(",", ":"))
        parse_templates(text)  # a pool the Lambdas would refuse fails here, by name
        tier = "Advanced" if len(text) > 4096 else "Standard"
        ssm.put_parameter(Name=name, Value=text, Type="String", Overwrite=True, Tier=tier)
        for note in self.pool_notes:
            self.progress(note)
        self.pool_notes = []

    def drain_pools(self) -> None:
        """Pool targets 0 on the run's templates: the housekeeper's next passes drain the
        members (the Lambdas' cached parameter is dropped, as a redeploy would)."""
        self._write_pools({"hot": 0, "stopped": 0})
        with contextlib.suppress(ImportError):
            from aws_lambda_powertools.utilities import parameters

            parameters.clear_caches()
        self.progress("warm pools drained: targets 0 (the housekeeper removes the members)")

    def pool_ready(self) -> Counter[tuple[str, str]]:
        """Free members ready for a job, per (template, kind): stopped ones stopped, hot ones
        running with their runner connected to GitHub and idle."""
        from jitrunners.models import runner_name

        idle = {r.name for r in self.sim.runners_left() if r.status == "online" and not r.busy}
        ready: Counter[tuple[str, str]] = Counter()
        for iid, seen in list(self.seen_instances.items()):
            kind, state = seen.get("pool"), seen["state"]
            if not kind or seen.get("job"):
                continue
            if (kind == "stopped" and state == "stopped") or (
                kind == "hot" and state == "running" and runner_name(iid, None, None, kind) in idle
            ):
                ready[(seen["template"], kind)] += 1
        return ready

    def wait_pools(self) -> bool:
        """Wait until every pool of the run is full (the housekeeper fills them)."""
        pool = self.options.pool or {}
        want = {(t, k): n for t in self._run_templates() for k, n in pool.items() if n}
        model = self.boot_model
        timeout = 60 + 6 * model.real(model.cold.p95 + model.connect.p95)
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        self.progress(f"filling warm pools ({self._pool_text()}) before any job is queued")
        if self.bus and self.bus.idle():
            self.scheduler.fire(self.functions["housekeeper"])
        ready: Counter[tuple[str, str]] = Counter()
        while time.monotonic() < deadline:
            ready = self.pool_ready()
            if all(ready[key] >= n for key, n in want.items()):
                took = model.emulated(time.monotonic() - started)
                self.progress(f"warm pools full in {took:.0f} emulated s")
                return True
            time.sleep(0.3)
        short = ", ".join(f"{t} {k} {ready[(t, k)]}/{n}" for (t, k), n in want.items())
        self.progress(f"warm pools not full after {timeout:.0f} s ({short}): jobs go anyway")
        return False

    def pool_left(self) -> int:
        """Pool members (tagged as such) still up."""
        return sum(
            1
            for i in self.world.instances(LIVE_STATES)
            if any(t["Key"] == TAG_POOL for t in i.get("Tags", []))
        )

    def job_latencies(self) -> list[dict[str, Any]]:
        """Every attempt a runner of ours took: its path, instance and queue-to-runner time
        (queued, or queued again after an approval, until assigned), in emulated seconds."""
        from jitrunners.models import runner_path

        found = []
        for attempts in self.sim.logical_jobs().values():
            for job in attempts:
                path = runner_path(job.runner_name)
                if job.started_ts is None or path is None:
                    continue
                found.append(
                    {
                        "job_id": job.id,
                        "run_attempt": job.run_attempt,
                        "path": path,
                        "instance_id": _instance_of(job.runner_name),
                        "started_ts": job.started_ts,
                        "seconds": self.boot_model.emulated(job.started_ts - job.queued_ts),
                    }
                )
        return found

    def queue_to_runner(self) -> dict[str, dict[str, Any]]:
        """n, p50, p95 and max of queue-to-runner per path (emulated seconds)."""
        samples: dict[str, list[float]] = {path: [] for path in PATHS}
        for record in self.job_latencies():
            samples[record["path"]].append(record["seconds"])
        return {path: latency_stats(values) for path, values in samples.items()}

    def _job_timings(self) -> JobTimings:
        """The users' timing fitted to the templates: a slow approval comes after a runner
        launched at the first `queued` has booted and idled out, a quick one well before; a
        "booting" cancel comes after scale-up's start delay (1 s) while the instance boots."""
        idle = [float(t.get("idle_timeout_s", 300)) for t in self.world.tf_templates] or [300.0]
        return JobTimings(
            cancel_queued_s=0.05,
            cancel_booting_s=2.0,
            cancel_running_s=0.3 * self.options.job_seconds,
            waiting_after_s=0.2,
            approval_short_s=0.4 * min(idle),
            approval_long_s=max(idle) + 5.0,
            rerun_after_s=0.5,
        )

    def _start_timeout(self, instance_id: str) -> float | None:
        template = self.seen_instances.get(instance_id, {}).get("template")
        found = next((t for t in self.world.tf_templates if t["name"] == template), None)
        return None if found is None else float(found.get("start_timeout_s", 600))

    def _import_functions(self) -> dict[str, Function]:
        prefix = self.options.prefix
        principals = None
        if self.options.iam:
            from devstack.iam import principals as iam

            principals, self.enforcer = iam.enforce_lambdas(
                self.world.client, self.world.documents, account=ACCOUNT, region=REGION,
                prefix=prefix, without=self.options.iam_without,
            )  # fmt: skip
        return {
            key: Function(key, prefix, principals=principals)
            for key in (
                "webhook",
                "scale-up",
                "scale-down",
                "redrive",
                "housekeeper",
                "budget-guard",
            )
        }

    def _event_source_sqs(self, key: str = "scale-up") -> Any:
        """The SQS an event source mapping polls with: AWS's mapping receives and deletes with
        the function's execution role, so with the IAM layer on its calls are authorized as that
        function, on moto's backend as the service makes them (shims.BackendSqs)."""
        if self.enforcer is None:
            return self.world.client("sqs")
        from devstack.iam.enforce import Enforcer
        from devstack.shims import BackendSqs

        role = self.functions[key].principals.get(key)
        enforcer = Enforcer(role, self.enforcer.lookup, region=REGION)
        if key == "scale-up":
            self.event_source_enforcer = enforcer
        else:
            self.teardown_source_enforcer = enforcer
        return BackendSqs(REGION, enforcer)

    def _start_shims(self) -> None:
        # With the functions in moto (`cloud`), the kill switch as Lambda and API Gateway obey it
        # (the state in moto, read at most once a second).
        stopped = intake = None
        # An invocation waiting out a retry's back-off lets the next one run (shims._TurnLock).
        if self.options.overlap_retries:
            step_out_while_retrying()
        if self.options.cloud:
            from devstack import cloud

            stopped = _cached(lambda: cloud.function_stopped(self.world, "webhook"), 1.0)
            intake = _cached(lambda: cloud.intake(self.world), 1.0)
        self.apigw = ApiGatewayShim(self.functions["webhook"], stopped=stopped).start()
        self.sim.webhook_url = self.apigw.url
        self.sim.listeners.append(self._on_job)
        # EventBridge sends to the teardown queue as the events service, outside the Lambdas'
        # roles (the queue policy lets our rules send).
        self.bus = EventBus(
            self.world.client("sqs"),
            self.world.teardown_queue_url,
            drop=self.options.faults.get("drop-events", 0.0),
            seed=self.options.seed,
            on_drop=lambda e: self.progress(
                f"event lost (drop-events): {e['detail-type']} {e['detail'].get('instance-id', '')}"
            ),
            send=functools.partial(self.world.deliver, self.world.teardown_queue_url),
        ).start()
        agent = InlineAgent if self.options.agent == "inline" else AgentShim
        self.agent = agent(
            self.workdir / "instances",
            on_event=self._on_command_event,
            launch_time=self.launch_times.get,
            job_seconds=self.options.job_seconds,
            ssm_offline=self.options.faults.get("ssm-offline", 0.0),
            offline_s=self.options.ssm_offline_s,
            seed=self.options.seed,
            region=REGION,
            log=self._debug,
            ec2=self.world.client("ec2"),
            prefix=self.options.prefix,
            on_poweroff=self._on_poweroff,
            slow_boot=self.options.faults.get("slow-boot", 0.0),
            start_timeout=self._start_timeout,
            boot_model=self.boot_model,
        )
        from devstack import pricing
        from jitrunners.aws.clients import PRICING_REGION, client

        pricing.attach(client("pricing", PRICING_REGION))  # moto has no Price List API
        if self.functions["scale-up"].available:
            self._attach_quotas()
            self.agent.attach(client("ssm"))
            self.agent.attach_ec2(client("ec2"))
            self.ec2_faults.attach(client("ec2"))
            self.event_source = SqsEventSource(
                self._event_source_sqs(),
                self.world.job_queue_url,
                self.functions["scale-up"],
                REGION,
                batch_size=self.options.scale_up_batch_size,
                window_s=self.scale_up_window_s(),
                poisoned=self.options.poisoned_messages,
                intake=intake,
            ).start()
        if self.functions["scale-down"].available:
            self.teardown_source = SqsEventSource(
                self._event_source_sqs("scale-down"),
                self.world.teardown_queue_url,
                self.functions["scale-down"],
                REGION,
                batch_size=self.options.teardown_batch_size,
                window_s=self.options.teardown_window_s,
                workers=self.options.event_workers,
                name="teardown-event-source",
            ).start()
        self.scheduler.every(self.functions["redrive"], self.options.redrive_every_s)
        self.scheduler.every(self.functions["housekeeper"], self.options.housekeeper_every_s)
        self.scheduler.start()
        watcher = threading.Thread(target=self._watch_instances, name="ec2-watcher", daemon=True)
        self._threads.append(watcher)
        watcher.start()

    def _attach_quotas(self) -> None:
        """The AWS quotas on every client that stands for a caller in AWS: the Lambdas' shared
        clients (and Powertools' SSM client, where it is another), each call counted for the
        function whose invocation made it; the instances' own SSM client (inline agent)."""
        quotas = self.aws_quotas
        if quotas is None:
            return
        from aws_lambda_powertools.utilities.parameters import SSMProvider
        from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS

        from jitrunners.aws.clients import client

        for service in ("ec2", "ssm", "sqs", "kms", "dynamodb"):
            quotas.attach(client(service))
        provider = DEFAULT_PROVIDERS.setdefault("ssm", SSMProvider())
        if provider.client is not client("ssm"):
            quotas.attach(provider.client)
        if isinstance(self.agent, InlineAgent):
            quotas.attach(self.agent._client(), function="instance")
        for function in self.functions.values():
            if function.handler is not None:
                function.handler = _acting(function.key, function.handler)

    def _github_on_provider_clock(self) -> None:
        """The Lambdas' GitHub client (one per process, made now as a warm container has it)
        reads GitHub's windows, resets and `retry-after` on the providers' clock, as it reads
        GitHub's own in AWS: its holds are then emulated seconds, which the Lambdas' delays
        (RETRY_DELAY_PERCENT) turn into real ones."""
        from jitrunners.config import get_settings
        from jitrunners.github.client import get_client

        scale_up = self.functions["scale-up"]
        bound = scale_up.principals.bind("scale-up") if scale_up.principals else None
        with bound or contextlib.nullcontext():
            github = get_client(get_settings())
        github._clock = github.shaper._clock = self.provider_clock.time

    def stop(self) -> None:
        self._stop.set()
        if self.progress.table is not None and self.startup_s is not None:
            self.progress.table.stop()  # drawn only once the stack was up
        for thread in self._threads:
            thread.join(timeout=10)
        if self.event_source:
            self.event_source.stop()
        if self.teardown_source:
            self.teardown_source.stop()
        self.scheduler.stop()
        if self.options.overlap_retries:
            step_out_while_retrying(False)
        if self.agent:
            self.agent.stop()
        if self.bus:
            self.bus.stop()
        if self.apigw:
            self.apigw.stop()
        self.runner_dist.stop()
        self.sim.stop()
        if self.shipper is not None:
            self.shipper.stop()
        self.world.stop()
        self._unroute_lambda_logs()
        if getattr(self, "_saved_env", None) is not None:
            os.environ.clear()
            os.environ.update(self._saved_env)
            _reset_lambda_caches()

    def publish_budget_alert(self, subject: str, message: str) -> Any:
        """What SNS does with an AWS Budgets notification on the budget topic: invoke the
        budget guard's alias with it (terraform/budget.tf)."""
        topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:{self.options.prefix}-budget"
        return self.functions["budget-guard"].invoke(sns_event(topic, subject, message))

    def missing(self) -> list[str]:
        return [f.missing_reason for f in self.functions.values() if not f.available]

    def _route_lambda_logs(self) -> None:
        from jitrunners.observability import logger

        self._log_file = self.log_path.open("a", encoding="utf-8")
        sink: Any = _Tee(self._log_file, self.out) if self.options.verbose else self._log_file
        if self.options.cloud:
            from devstack.cloud import LogShipper

            self.shipper = LogShipper(self.world.client("logs"), self.options.prefix).start()
            sink = _Tee(sink, self.shipper)
        handler = logger.registered_handler
        self._previous_stream = handler.setStream(sink)  # type: ignore[attr-defined]
        # Powertools prints EMF metrics on stdout: into the log too (progress has its own stream).
        self._previous_stdout = sys.stdout
        sys.stdout = sink  # type: ignore[assignment]

    def _unroute_lambda_logs(self) -> None:
        from jitrunners.observability import logger

        with contextlib.suppress(AttributeError):
            logger.registered_handler.setStream(self._previous_stream)  # type: ignore[attr-defined]
        if getattr(self, "_previous_stdout", None) is not None:
            sys.stdout = self._previous_stdout
        if self._log_file:
            self._log_file.close()

    def _debug(self, text: str) -> None:
        if self.options.verbose:
            self.progress(text)

    # ------------------------------------------------------------------ GitHub and AWS events
    def _on_job(self, what: str, job: SimJob) -> None:
        where = f" on {_instance_of(job.runner_name)}" if job.runner_name else ""
        result = f" ({job.conclusion})" if job.conclusion else ""
        attempt = f" attempt {job.run_attempt}" if job.run_attempt > 1 else ""
        event = {
            "waiting": "waiting for approval (environment protection)",
            "approved": "approved, queued again",
            "cancelled": "cancelled by a user before any runner took it",
            "cancelling": f"cancelled by a user while running{where}",
            "rerun": f"re-run by a user (attempt {job.run_attempt + 1} follows)",
        }.get(what, f"{what}{where}{result}")
        if what == "in_progress":
            owed = self.launched_for.get(_instance_of(job.runner_name))
            if job.stolen_from is not None:
                event += f" (stolen: its runner was launched for job {job.stolen_from})"
            elif owed is not None and owed != job.id:
                event += f" (its runner was launched for job {owed})"
        self.progress(f"job {job.id} {job.name} {job.repo}{attempt}: {event}")
        if self.progress.table is not None:
            self.progress.table.job(what, job)
        if what == "in_progress":
            self._maybe_interrupt(job)

    def _on_command_event(self, event: dict[str, Any]) -> None:
        detail = event["detail"]
        self.progress(f"instance {detail['instance-id']}: runner command {detail['status']}")
        assert self.bus is not None
        self.bus.put(event)

    def _watch_instances(self) -> None:
        ec2 = self.world.client("ec2")
        while not self._stop.wait(0.3):
            try:
                instances = self._watched_instances(ec2)
            except Exception:  # noqa: BLE001 - the watcher outlives a failed describe
                self.counters["watch_errors"] += 1
                continue
            live: Counter[str] = Counter()
            for instance in instances:
                self._observe(instance, live)
            self.max_concurrent = max(self.max_concurrent, sum(live.values()))
            for template, count in live.items():
                self.max_per_template[template] = max(self.max_per_template[template], count)

    def _watched_instances(self, ec2: Any) -> list[dict[str, Any]]:
        """The instances not yet seen terminated. Terminated ones stay listed in EC2 (an hour in
        AWS, for ever in moto): describing them all every 0.3 s took the watcher seconds a round
        once a long run had launched hundreds, so new instances booted minutes late."""
        if self.options.watch == "moto":
            return self.world.instance_changes()
        ours = {"Name": "tag:jitrunners:prefix", "Values": [self.options.prefix]}
        self._watch_rounds += 1
        if self._watch_rounds % FULL_WATCH_EVERY == 1:
            # Now and then all of them: one launched and ended between two rounds is seen too.
            return _flatten(ec2.describe_instances(Filters=[ours]))
        not_ended = {"Name": "instance-state-name", "Values": sorted(NOT_TERMINATED)}
        found = _flatten(ec2.describe_instances(Filters=[ours, not_ended]))
        listed = {instance["InstanceId"] for instance in found}
        # Those seen alive and no longer listed have ended since: their last state, by id.
        ended = sorted(
            iid
            for iid, seen in list(self.seen_instances.items())
            if seen["state"] != "terminated" and iid not in listed
        )
        for start in range(0, len(ended), 100):
            found += _flatten(ec2.describe_instances(InstanceIds=ended[start : start + 100]))
        return found

    def _observe(self, instance: dict[str, Any], live: Counter[str]) -> None:
        iid, state = instance["InstanceId"], instance["State"]["Name"]
        before = self.seen_instances.get(iid)
        if before is not None and before["state"] == "terminated":
            return  # it stays so: a burst's thousands of ended instances, every round
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        template = tags.get("jitrunners:template", "?")
        market = instance.get("InstanceLifecycle", "on-demand")
        if before is None:
            self.launch_times[iid] = time.time()
            self.progress(f"instance {iid} launched ({template}, {market})")
            self.counters["instances_launched"] += 1
            if state in LIVE_STATES and self.agent is not None:
                self.agent.boot(iid)
        self.seen_instances[iid] = {
            "state": state,
            "template": template,
            "market": market,
            "type": instance.get("InstanceType", ""),
            "sizing": tags.get("jitrunners:sizing", ""),
            "pool": tags.get(TAG_POOL, ""),
            "job": tags.get(TAG_JOB_ID, ""),
        }
        # `launched-for` (a cold instance launched with others gets it from its start, and a
        # swap may rewrite its job tags soon after), else its first job-id tag.
        job_tag = tags.get("jitrunners:launched-for", "").split("/", 1)[0] or tags.get(
            "jitrunners:job-id", ""
        )
        if job_tag.isdigit():
            self.launched_for.setdefault(iid, int(job_tag))
        if self.progress.table is not None:
            self.progress.table.instance(iid, state)
        if state in LIVE_STATES:
            live[template] += 1
        if state == "terminated" and (before is None or before["state"] != "terminated"):
            self.terminate_times[iid] = time.time()
            self.progress(f"instance {iid} terminated")
            assert self.agent is not None
            assert self.bus is not None
            self.agent.kill_instance(iid)
            self.bus.put(
                ec2_event(
                    "EC2 Instance State-change Notification", iid, {"state": "terminated"}, REGION
                )
            )

    def _on_poweroff(self, iid: str) -> None:
        """The instance shut itself down (a failing bootstrap): the launch templates say
        instance_initiated_shutdown_behavior = terminate (terraform/runners.tf)."""
        self.counters["powered_off"] += 1
        self.progress(f"instance {iid}: powered off from inside")
        with contextlib.suppress(Exception):
            self.world.client("ec2").terminate_instances(InstanceIds=[iid])

    def _maybe_interrupt(self, job: SimJob) -> None:
        """`spot-interrupt`: the instance running this job is reclaimed mid-job (warning event,
        runner lost, instance terminated with EC2's spot state reason). Only spot instances, and
        each logical job at most once, so that its re-run can finish it."""
        fraction = self.options.faults.get("spot-interrupt", 0.0)
        iid = _instance_of(job.runner_name)
        market = self.seen_instances.get(iid, {}).get("market")
        with self._interrupt_lock:
            if not fraction or market != "spot" or job.key in self._interrupted:
                return  # EC2 reclaims spot instances only
            self._interrupted.add(job.key)
            if self._rng.random() >= fraction:
                return
        threading.Thread(
            target=self._interrupt, args=(iid,), name=f"interrupt-{iid}", daemon=True
        ).start()

    def _interrupt(self, iid: str) -> None:
        assert self.agent is not None
        assert self.bus is not None
        self.counters["spot_interruptions"] += 1
        self.progress(f"instance {iid}: spot interruption")
        self.bus.put(
            ec2_event(
                "EC2 Spot Instance Interruption Warning",
                iid,
                {"instance-action": "terminate"},
                REGION,
            )
        )
        self.agent.kill_instance(iid)
        # As in AWS: the instance is gone first; GitHub fails the job once it has lost the runner.
        self.world.spot_reclaim(iid)
        for runner in self.sim.runners_left():
            if _instance_of(runner.name) == iid:
                with contextlib.suppress(Exception):
                    self.sim.runner_disconnect({"runner_id": runner.id, "secret": runner.secret})

    # ------------------------------------------------------------------ the demo
    def queue_jobs(self) -> list[SimJob]:
        # By default the jobs go round the templates without a sizing policy; sized jobs are
        # asked for on their own (sized_jobs, refused_sized_jobs: `make run ARGS=--sizing`).
        names = self._run_templates()
        by_name = {t["name"]: t for t in self.world.tf_templates}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(
                f"unknown template(s): {', '.join(unknown)}; known: {', '.join(by_name)}"
            )
        jobs: list[SimJob] = []
        steal = self.options.faults.get("steal", 0.0)
        per_run = max(1, self.options.jobs_per_run)
        run_id: int | None = None
        for index in range(self.options.jobs):
            if index and self.options.job_spacing_s:
                time.sleep(self.options.job_spacing_s)
            # With a run per job (the default) `turn` is the job's index.
            turn = index // per_run
            template = by_name[names[turn % len(names)]]
            repo = REPOS[turn % len(REPOS)]
            labels = list(template["labels"])
            if template.get("sizing"):
                labels += SIZES[(index // len(names)) % len(SIZES)]
            # `steal`: some jobs ask only for labels several templates have (seeded per job).
            if random.Random(f"{self.options.seed}/labels/{index}").random() < steal:
                labels = list(SHARED_LABELS)
            if index % per_run == 0:
                run_id = None  # a new run: the simulator numbers it
            job = self.sim.queue_job(
                repo, labels, name=f"{template['name']}-{index + 1}", run_id=run_id
            )
            run_id = job.run_id
            jobs.append(job)
        sized = next((t for t in self.world.tf_templates if t.get("sizing")), None)
        for index in range(self.options.sized_jobs if sized else 0):
            assert sized is not None
            labels = [*sized["labels"], *SIZES[index % len(SIZES)]]
            name = f"{sized['name']}-sized-{index + 1}"
            jobs.append(self.sim.queue_job(REPOS[index % len(REPOS)], labels, name=name))
        for index in range(self.options.refused_sized_jobs if sized else 0):
            assert sized is not None
            labels = [*sized["labels"], *REFUSED_SIZES[index % len(REFUSED_SIZES)]]
            job = self.sim.queue_job(REPOS[0], labels, name=f"{sized['name']}-refused-{index + 1}")
            self.refused_jobs[job.id] = job
            jobs.append(job)
        self.queued_total = len(jobs)
        return jobs

    def queue_later_jobs(self) -> list[SimJob]:
        """`later_jobs`: the second wave, round the run's templates like the first."""
        by_name = {t["name"]: t for t in self.world.tf_templates}
        names = self._run_templates()
        jobs = []
        for index in range(self.options.later_jobs):
            template = by_name[names[index % len(names)]]
            name = f"{template['name']}-later-{index + 1}"
            jobs.append(
                self.sim.queue_job(REPOS[index % len(REPOS)], template["labels"], name=name)
            )
        self.queued_total += len(jobs)
        return jobs

    def cancel_refused(self) -> None:
        """A job the webhook refused (202 with the reason) stays queued on GitHub; its user
        cancels it once the refusal is in."""
        answered = {}
        for delivery in list(self.sim.deliveries):
            if delivery.action == "queued" and 200 <= delivery.status_code < 300:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    answered[json.loads(delivery.body)["workflow_job"]["id"]] = delivery
        for job_id, job in list(self.refused_jobs.items()):
            if job_id in answered and job_id not in self.refused_cancelled:
                self.refused_cancelled.add(job_id)
                self.progress(
                    f"job {job.name}: refused by the webhook ({', '.join(job.labels)}); "
                    "its user cancels it"
                )
                self.sim.cancel_job(job_id)

    def completed(self) -> int:
        """Logical jobs whose final outcome is success."""
        return self._outcomes()["success"]

    def cancelled(self) -> int:
        """Logical jobs whose final outcome is cancelled."""
        return self._outcomes()["cancelled"]

    def finished(self) -> int:
        """Logical jobs done as they should be: succeeded or cancelled by a user."""
        outcomes = self._outcomes()
        return outcomes["success"] + outcomes["cancelled"]

    def _outcomes(self) -> Counter[str]:
        grouped = self.sim.logical_jobs()
        return Counter(self.sim.job_outcome(key, attempts) for key, attempts in grouped.items())

    def job_records(self) -> list[JobRecord]:
        """Every attempt of every job, oldest first."""
        templates = self.world.tf_templates
        records = []
        for attempts in self.sim.logical_jobs().values():
            for job in attempts:
                template = _route(job.labels, templates)
                runner = _instance_of(job.runner_name) or None
                records.append(
                    JobRecord(
                        job_id=job.id,
                        run_attempt=job.run_attempt,
                        repo=job.repo,
                        name=job.name,
                        labels=job.labels,
                        template=template,
                        status=job.status,
                        conclusion=job.conclusion,
                        runner=runner,
                        runner_launched_for=self.launched_for.get(runner or ""),
                        stolen=job.stolen_from is not None,
                    )
                )
        return records

    def instance_records(self) -> list[InstanceRecord]:
        """Every instance the watcher saw, in launch order."""
        ran: dict[str, list[tuple[int, int]]] = {}
        for job in self.job_records():
            if job.runner:
                ran.setdefault(job.runner, []).append((job.job_id, job.run_attempt))
        started = dict(self.agent.first_command_at) if self.agent else {}
        return sorted(
            (
                InstanceRecord(
                    instance_id=iid,
                    template=seen["template"],
                    market=seen["market"],
                    launched_at=self.launch_times[iid],
                    terminated_at=self.terminate_times.get(iid),
                    launched_for=self.launched_for.get(iid),
                    runner_started_at=started.get(iid),
                    jobs_run=tuple(ran.get(iid, ())),
                )
                for iid, seen in list(self.seen_instances.items())
                if iid in self.launch_times
            ),
            key=lambda r: r.launched_at,
        )

    def extra_instances(self) -> int:
        """Instances launched minus the job attempts that ran on our runners (any conclusion:
        success, cancelled, or failed when the instance was lost mid-job). An ephemeral runner
        runs at most one attempt, so this is the number of instances whose runner took no job:
        idled out, given up at the start timeout, or stopped because its job went away."""
        ours = set(self.seen_instances)
        ran = sum(1 for job in self.job_records() if job.runner in ours)
        return self.counters["instances_launched"] - ran

    def reconciled_launches(self) -> int:
        """Launches the housekeeper's reconciliation pass made: its log lines whose message is
        exactly RECONCILIATION_LAUNCH (one per launch). Counted as the log grows: each call reads
        the whole lines written since the last (a 10,000-job burst logs 400 MB, and the bench
        asks for a summary every second until the run settles)."""
        if not self.log_path.exists():
            return 0
        with self.log_path.open("rb") as log:
            log.seek(self._reconciled_read)
            fresh = log.read()
        whole = fresh[: fresh.rfind(b"\n") + 1]  # a line still being written waits for the next
        self._reconciled_read += len(whole)
        marker = RECONCILIATION_LAUNCH.encode()
        for line in whole.splitlines():
            if marker not in line:
                continue
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                self._reconciled += (
                    isinstance(record, dict) and record.get("message") == RECONCILIATION_LAUNCH
                )
        return self._reconciled

    def summary(self) -> dict[str, Any]:
        outcomes = self._outcomes()
        records = self.job_records()
        return {
            # Sized jobs count, and refused ones too: their users cancel them.
            "jobs": self.queued_total,
            "completed": outcomes["success"],
            "cancelled": outcomes["cancelled"],
            "swaps": sum(1 for r in records if r.swap),
            "reconciled_launches": self.reconciled_launches(),
            "extra_instances": self.extra_instances(),
            "instances_launched": self.counters["instances_launched"],
            "instances_left": len(self.world.instances(LIVE_STATES)),
            "jit_params_left": len(self.world.jit_params()),
            "runners_left": len(self.sim.runners_left()),
            "queue_left": self.world.queue_depth(self.world.job_queue_url),
            "dlq_left": self.world.queue_depth(self.world.dlq_url),
            "pool_left": self.pool_left(),
            "queue_to_runner_s": self.queue_to_runner(),
            "max_concurrent": self.max_concurrent,
            "startup_s": self.startup_s,
            "seconds": round(time.monotonic() - self.started, 1),
        }

    def settled(self) -> bool:
        return not self.unsettled(self.summary())

    def unsettled(self, summary: dict[str, Any]) -> list[str]:
        """What keeps a run from being over: jobs not finished, things left, ends not seen."""
        why = []
        if summary["completed"] + summary["cancelled"] != summary["jobs"]:
            why.append("jobs_unfinished")
        keys = LEFT_KEYS
        why += [f"{key}={summary[key]}" for key in keys if summary[key]]
        # The watcher saw every end too (instance_records' terminated_at).
        if any(seen["state"] != "terminated" for seen in list(self.seen_instances.values())):
            why.append("ends_not_seen")
        return why

    def scale_up_window_s(self) -> float:
        """Scale-up's batching window as the module sets it: the variable, at least 1 s for a
        batch above 10 records (AWS requires it)."""
        above_ten = 1.0 if self.options.scale_up_batch_size > 10 else 0.0
        return max(self.options.scale_up_window_s, above_ten)

    def run_timeout_s(self) -> float:
        """The run's bound: generous per job, and counted from when the stack is up, so that a
        slow start-up (its own bound) leaves the jobs all of their time."""
        per_job = 10 * max(1.0, self.options.job_seconds)
        jobs = self.options.jobs + self.options.later_jobs
        return self.options.timeout_s or 120 + per_job * jobs

    def run_demo(self) -> dict[str, Any]:
        timeout = self.run_timeout_s()
        if self.options.pool and self.functions["scale-up"].available:
            self.wait_pools()
        deadline = time.monotonic() + timeout
        self.queue_jobs()
        if not self.functions["scale-up"].available:
            self.sim.wait_webhooks_sent(timeout_s=30)
            self._wait(
                lambda: self.world.queue_depth(self.world.job_queue_url) >= self.options.jobs, 10
            )
            for reason in self.missing():
                self.progress(f"missing: {reason}")
            self.progress("jobs stop at the SQS job queue: the scale-up Lambda is not built yet")
            return self.summary()
        self._wait_finished(deadline)
        first = self.finished() >= self.queued_total
        if first and self.options.later_jobs:
            wanted = self.options.later_after_log
            self._wait(lambda: wanted in self.logged_text(), deadline - time.monotonic())
            self.progress(f"the first {self.queued_total} jobs finished: queueing the later ones")
            self.queue_later_jobs()
            self._wait_finished(deadline)
        if self.options.pool:
            self.drain_pools()
        # DESIGN §6: after the jobs finish and the housekeeper runs, nothing is left.
        settle_until = min(deadline, time.monotonic() + 60)
        summary = self.summary()
        while time.monotonic() < settle_until and self.unsettled(summary):
            if self.functions["housekeeper"].available and self.bus and self.bus.idle():
                self.scheduler.fire(self.functions["housekeeper"])
            time.sleep(1.0)
            summary = self.summary()
        if time.monotonic() >= deadline:
            self.progress(
                f"timed out: the jobs did not finish within {timeout:.0f} s of start-up (--timeout)"
            )
        elif unsettled := self.unsettled(summary):
            self.progress(f"not settled 60 s after the last job: {', '.join(unsettled)}")
        # The summary the loop judged, not a later one: what it reports is what was decided on.
        return summary

    def _wait_finished(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.cancel_refused()
            if self.finished() >= self.queued_total:
                return
            time.sleep(0.3)

    @staticmethod
    def _wait(predicate: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.2)
        return False

    def serve_info(self) -> dict[str, str]:
        assert self.apigw is not None
        return {
            "webhook_url": self.apigw.url,
            "webhook_secret": self.sim.webhook_secret,
            "aws_endpoint_url": self.world.endpoint_url,
            "github_api_url": self.sim.url,
        }

    def cli_env(self) -> dict[str, str]:
        """What the `jitrunners` CLI needs to target this stack (`--serve` prints them)."""
        assert self.apigw is not None
        return {
            "AWS_ENDPOINT_URL": self.world.endpoint_url,
            "AWS_ACCESS_KEY_ID": "devstack",
            "AWS_SECRET_ACCESS_KEY": "devstack",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "JITRUNNERS_PREFIX": self.options.prefix,
            "JITRUNNERS_WEBHOOK_URL": self.apigw.url,
            "JITRUNNERS_GITHUB_URL": self.sim.url,
        }

    def iam_denials(self, *, raced_ends: bool = False) -> list[str]:
        """Every request the IAM layer refused, as `operation action resource`; without
        `raced_ends`, not those on an instance that had ended when refused (Enforcer.raced_ends:
        AWS refuses them as well, and their callers retry)."""
        enforcers = [
            e
            for e in (self.enforcer, self.event_source_enforcer, self.teardown_source_enforcer)
            if e is not None
        ]
        return [
            f"{operation} {check.action} {check.resource}"
            for enforcer in enforcers
            for operation, check, result in list(enforcer.decisions)
            if not result.allowed
            and (raced_ends or not any(check is c for c in list(enforcer.raced_ends)))
        ]

    def logged_text(self) -> str:
        """Everything the stack logged: Lambda logs, progress lines, every runner's output."""
        parts = [self.log_path.read_text(encoding="utf-8") if self.log_path.exists() else ""]
        parts += self.progress.lines
        if self.agent:
            parts += self.agent.outputs()
        return "\n".join(parts)

    def commands_text(self) -> str:
        return json.dumps(self.agent.commands if self.agent else [])


class _Tee:
    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def _cached(read: Callable[[], Any], seconds: float) -> Callable[[], Any]:
    """`read()`, answered from memory for `seconds` after each call."""
    lock = threading.Lock()
    known: list[tuple[float, Any]] = []

    def cached() -> Any:
        with lock:
            if known and time.monotonic() - known[0][0] < seconds:
                return known[0][1]
        value = read()
        with lock:
            known[:] = [(time.monotonic(), value)]
        return value

    return cached


def _acting(key: str, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """The handler, its AWS calls attributed to function `key` (devstack/quotas.py)."""

    def acting(event: Any, context: Any) -> Any:
        with acting_as(key):
            return handler(event, context)

    return acting


def _reset_lambda_caches() -> None:
    from jitrunners import config, guardrail
    from jitrunners.aws import clients
    from jitrunners.lifecycle.provisioning import headcount

    config.get_settings.cache_clear()
    config._parsed.clear()
    clients.reset()
    guardrail.spot_only_cache.clear()
    headcount.reset()
    with contextlib.suppress(ImportError):
        from aws_lambda_powertools.utilities import parameters
        from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS

        parameters.clear_caches()
        DEFAULT_PROVIDERS.pop("ssm", None)  # an IAM-hooked provider of an earlier stack


def _route(labels: Any, templates: list[dict[str, Any]]) -> str | None:
    """The template the webhook routes a job to (the first whose labels contain the job's, its
    sizing labels aside where the template admits sizing)."""
    from jitrunners.sizing import sizing_labels

    for t in templates:
        fixed = {label.casefold() for label in t["labels"]}
        extra = sizing_labels(labels, frozenset(fixed)) if t.get("sizing") else ()
        wanted = {label.casefold() for label in labels if label not in extra}
        if wanted and wanted <= fixed:
            return str(t["name"])
    return None


def _instance_of(runner_name: str | None) -> str:
    """The instance a runner of ours runs on, from its name (jitrunners.models.runner_name)."""
    from jitrunners.models import runner_instance

    return runner_instance(runner_name) or runner_name or ""


def _room_for_pool(
    template: dict[str, Any], pool: dict[str, int], notes: list[str]
) -> dict[str, Any]:
    """The template with room for the pool the run applies (its `pool` field itself is written
    into the runner-template parameter), as the Lambdas require it: max_runners raised by the
    pool's members when they do not fit in it (the jobs keep the room they had), a market that
    may launch on-demand when it keeps stopped members (they are refused on "spot"), and scope
    org when it keeps hot ones (they register with the organization before any job names a
    repository)."""
    found = dict(template)
    name, most = found["name"], sum(pool.values())
    limit = int(found.get("max_runners", 10))
    if most > limit:  # the pool's members, and the room jobs had before beside them
        notes.append(f"{name}: max_runners {limit} -> {limit + most} for the pool")
        found["max_runners"] = limit + most
    if pool.get("stopped") and found.get("market") == "spot":
        notes.append(f"{name}: market spot -> spot-then-on-demand (stopped members are on-demand)")
        found["market"] = "spot-then-on-demand"
    if pool.get("hot") and found.get("scope", "org") != "org":
        notes.append(f"{name}: scope {found['scope']} -> org (hot members register before a job)")
        found["scope"] = "org"
    return found


def latency_stats(values: list[float]) -> dict[str, Any]:
    """n, p50, p95 (linear between ranks) and max, rounded to 0.1 s; None without samples."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": None, "p95": None, "max": None}

    def at(q: float) -> float:
        rank = q * (len(ordered) - 1)
        low = int(rank)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)

    return {
        "n": len(ordered),
        "p50": round(at(0.5), 1),
        "p95": round(at(0.95), 1),
        "max": round(ordered[-1], 1),
    }
