"""Property: through lost, duplicated and reordered events nothing of ours leaks, no job is lost.

A seeded random walk drives the whole lifecycle: GitHub queues jobs (some webhook deliveries
fail), a stand-in for scale-up follows the documented contract (duplicate-launch check by job-id
tag, `start` after `launch`, SQS moving poison messages to the DLQ), GitHub hands queued jobs to
idle runners, runners finish or idle out, spot reclaims and operators terminate instances, and
every EventBridge event may be lost, duplicated or delivered late. The real scale-down, redrive
and housekeeper code runs against moto. After every housekeeper run, each job GitHub still has
queued has a live instance launched for it or a message in the job queue or the DLQ; when the
traffic stops and the housekeeper has run, no instance, parameter or registration of ours is left.
"""

from __future__ import annotations

import json
import random
from typing import Any

import boto3
import pytest

from jitrunners.aws import inbox, queue
from jitrunners.config import get_settings, load_templates
from jitrunners.lifecycle.cleanup import CleanupIncomplete, Context
from jitrunners.lifecycle.recovery.redrive import RedriveDeps, redrive
from jitrunners.lifecycle.recovery.sweep import sweep
from jitrunners.lifecycle.teardown.events import parse_event
from jitrunners.lifecycle.teardown.scale_down import handle_event
from jitrunners.models import JobMessage
from tests.conftest import _reset_process_caches
from tests.support import world
from tests.support.events import command_event, spot_event, state_event
from tests.support.world import Clock, FakeDelivery, FakeGitHub, FakeJob

REPO = "acme/app"
ORG = "orgs/acme"
STEPS = 70

pytestmark = pytest.mark.usefixtures("fast_ec2")


class SimGitHub(FakeGitHub):
    """GitHub whose redelivery reaches our webhook (which enqueues the launch)."""

    sim: Simulation

    def redeliver(self, delivery_id: int) -> None:
        super().redeliver(delivery_id)
        self.sim.redelivered(delivery_id)


class Simulation:
    def __init__(self, seed: int, job_queue: str, dlq: str) -> None:
        self.rng = random.Random(seed)
        self.clock = Clock()
        self.github = SimGitHub()
        self.github.sim = self
        self.job_queue = job_queue
        self.dlq = dlq
        self.events: list[dict[str, Any]] = []
        self.delivery_jobs: dict[int, int] = {}
        self.next_job = 1
        self.next_delivery = 1
        self.runner_of: dict[str, int | None] = {}  # started instance -> job it runs
        settings = get_settings()
        self.ctx = Context.build(settings, load_templates(settings), self.github, self.clock)

    # --- GitHub and our webhook ------------------------------------------------------------
    def new_job(self) -> None:
        job_id = self.next_job
        self.next_job += 1
        self.github.jobs[(REPO, job_id)] = FakeJob(job_id, "queued")
        delivery = self.next_delivery
        self.next_delivery += 1
        self.delivery_jobs[delivery] = job_id
        failed = self.rng.random() < 0.15
        self.github.deliveries.append(
            FakeDelivery(
                delivery,
                f"guid-{delivery}",
                "workflow_job",
                "queued",
                502 if failed else 202,
                self.clock(),
            )
        )
        if not failed:
            self.enqueue_launch(job_id)

    def redelivered(self, delivery_id: int) -> None:
        self.enqueue_launch(self.delivery_jobs[delivery_id])

    def enqueue_launch(self, job_id: int) -> None:
        message = JobMessage(
            kind="launch",
            job_id=job_id,
            run_id=job_id * 10,
            run_attempt=1,
            repo=REPO,
            owner="acme",
            installation_id=7,
            labels=("self-hosted", "linux-x64"),
            template="linux-x64",
            delivery_id=f"dlv-{job_id}",
            queued_at=self.clock().isoformat(),
        )
        queue.send_job(self.job_queue, message)

    # --- scale-up as docs/contracts.md describes it ------------------------------------------
    def scale_up(self) -> None:
        for received in inbox.receive(self.job_queue, max_messages=self.rng.randint(1, 4)):
            message = JobMessage.from_json(received.body)
            if self.rng.random() < 0.1:
                # Failed maxReceiveCount times: SQS moves it to the DLQ untouched.
                boto3.client("sqs").send_message(QueueUrl=self.dlq, MessageBody=received.body)
            elif message.kind == "launch":
                self.launch(message)
            else:
                self.start(message)
            inbox.delete(self.job_queue, received.receipt_handle)

    def launch(self, message: JobMessage) -> None:
        job = self.github.jobs[(REPO, message.job_id)]
        if job.status != "queued":
            return  # CHECK_JOB_QUEUED
        if any(i.job_id == message.job_id for i in self.live()):
            return  # duplicate launch: an instance for this job already exists
        instance_id = world.launch(
            launched_at=self.clock(), job_id=message.job_id, run_id=message.run_id
        )
        queue.send_job(self.job_queue, message.start_for(instance_id))

    def start(self, message: JobMessage) -> None:
        instance_id = str(message.instance_id)
        if world.state(instance_id) != "running":
            # Gone before its runner started: scale-up re-queues the launch if still wanted.
            if self.github.jobs[(REPO, message.job_id)].status == "queued":
                queue.send_job(self.job_queue, message.relaunch())
            return
        if instance_id in self.runner_of:
            return  # a duplicate start: the command already runs
        world.put_jit_param(instance_id)
        self.github.register(ORG, instance_id, status="online")
        backend = world._backend_instance(instance_id)
        backend.add_tag("jitrunners:command-id", world.command_id(instance_id))
        backend.add_tag("jitrunners:started-at", self.clock().isoformat())
        self.runner_of[instance_id] = None

    # --- GitHub hands jobs to idle runners; runners end -------------------------------------
    def live(self) -> list[Any]:
        from jitrunners.aws import fleet

        return fleet.list_instances("jitrunners", ("pending", "running"))

    def idle_runners(self) -> list[str]:
        live = {i.id for i in self.live()}
        return [i for i, job in self.runner_of.items() if job is None and i in live]

    def queued_jobs(self) -> list[FakeJob]:
        return [j for j in self.github.jobs.values() if j.status == "queued"]

    def assign(self) -> None:
        from jitrunners.aws import fleet

        for instance_id in self.idle_runners():
            queued = self.queued_jobs()
            if not queued:
                return
            tagged = fleet.get_instance(instance_id, "jitrunners")
            own = [j for j in queued if tagged is not None and j.id == tagged.job_id]
            job = own[0] if own else self.rng.choice(queued)
            job.status, job.runner_name = "in_progress", instance_id
            self.runner_of[instance_id] = job.id
            self.github.runners[ORG][instance_id].busy = True

    def runner_exits(self, instance_id: str, status: str) -> None:
        job_id = self.runner_of.pop(instance_id)
        if job_id is not None:
            job = self.github.jobs[(REPO, job_id)]
            job.status, job.conclusion = "completed", "success"
        runner = self.github.runners.get(ORG, {}).get(instance_id)
        if runner is not None:
            if self.rng.random() < 0.7:
                del self.github.runners[ORG][instance_id]  # GitHub removes the ephemeral runner
            else:
                runner.status, runner.busy = "offline", False
        command = world.send_runner_command(instance_id)  # moto reports it finished
        world._backend_instance(instance_id).add_tag("jitrunners:command-id", command)
        self.emit(command_event(instance_id, command, status, time=self.clock().isoformat()))

    def finish_some(self) -> None:
        busy = [i for i, job in self.runner_of.items() if job is not None]
        if busy:
            self.runner_exits(self.rng.choice(busy), "Success")

    def idle_out(self) -> None:
        # Only when no job waits: GitHub would have handed an idle runner a matching job.
        idle = self.idle_runners()
        if idle and not self.queued_jobs():
            self.runner_exits(self.rng.choice(idle), "Failed")

    def reclaim(self) -> None:
        live = self.live()
        if not live:
            return
        instance = self.rng.choice(live)
        kind = self.rng.choice(["spot", "operator"])
        if kind == "spot":
            self.emit(spot_event(instance.id, time=self.clock().isoformat()))
        job_id = self.runner_of.pop(instance.id, None)
        if job_id is not None:
            job = self.github.jobs[(REPO, job_id)]
            job.status, job.conclusion = "completed", "failure"
        runner = self.github.runners.get(ORG, {}).get(instance.id)
        if runner is not None:
            runner.status, runner.busy = "offline", False
        world.terminate(instance.id)
        self.emit(state_event(instance.id, "terminated", time=self.clock().isoformat()))

    # --- events, schedules -------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        roll = self.rng.random()
        if roll < 0.25:
            return  # lost
        self.events.append(event)
        if roll < 0.4:
            self.events.append(json.loads(json.dumps(event)))  # duplicated

    def deliver_event(self) -> None:
        if not self.events:
            return
        event = self.events.pop(self.rng.randrange(len(self.events)))  # any order
        try:
            handle_event(parse_event(event), self.ctx)
        except CleanupIncomplete:
            self.events.append(event)  # EventBridge retries the asynchronous invocation

    def redrive(self) -> None:
        def status(message: JobMessage) -> str | None:
            job = self.github.get_job(message.repo, message.job_id, message.installation_id)
            return None if job is None else job.status

        deps = RedriveDeps(job_status=status, clock=self.clock, remaining_ms=lambda: 300_000)
        redrive(self.dlq, self.job_queue, self.ctx.settings, deps)

    def housekeep(self) -> None:
        sweep(self.ctx)
        self.check_no_job_lost()

    def step(self) -> None:
        action = self.rng.choices(
            [
                self.new_job,
                self.scale_up,
                self.assign,
                self.finish_some,
                self.idle_out,
                self.reclaim,
                self.deliver_event,
                self.redrive,
                self.housekeep,
            ],
            weights=[4, 5, 3, 3, 1, 1, 5, 1, 1],
        )[0]
        action()
        self.clock.advance(seconds=self.rng.randint(5, 90))

    # --- invariants --------------------------------------------------------------------------
    def messages(self) -> list[JobMessage]:
        """Every message in the job queue and the DLQ, visible or in flight (moto's own state)."""
        from moto.sqs.models import sqs_backends

        backend = sqs_backends[world.ACCOUNT][world.REGION]
        found = []
        for name in ("jitrunners-jobs", "jitrunners-dlq"):
            for message in backend.queues[name]._messages:
                found.append(JobMessage.from_json(message.body))
        return found

    def check_no_job_lost(self) -> None:
        launched = {i.job_id for i in self.live()}
        waiting = {m.job_id for m in self.messages()}
        for job in self.queued_jobs():
            assert job.id in launched | waiting, f"job {job.id} is queued on GitHub but lost"

    def drain(self) -> None:
        """Traffic stops: every job runs to its end, every event is delivered or lost."""
        for _ in range(200):
            self.redrive()
            self.scale_up()
            self.assign()
            self.finish_some()
            self.idle_out()
            self.deliver_event()
            self.clock.advance(seconds=30)
            if not (self.messages() or self.runner_of or self.events or self.queued_jobs()):
                break
        # A day later, with every lost event lost for good, the housekeeper runs.
        self.clock.advance(days=1)
        self.housekeep()


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_nothing_leaks_and_no_job_is_lost(
    seed: int, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dlq = boto3.client("sqs").create_queue(QueueName="jitrunners-dlq")["QueueUrl"]
    monkeypatch.setenv("DLQ_URL", dlq)
    monkeypatch.setenv("GITHUB_APP_ID", "12345")  # App mode: failed deliveries are recovered
    monkeypatch.setenv("MAX_REDRIVES", "100")  # poison here is random, not persistent
    _reset_process_caches()
    sim = Simulation(seed, env["JOB_QUEUE_URL"], dlq)

    for _ in range(STEPS):
        sim.step()
    sim.housekeep()
    sim.drain()

    assert sim.next_job > 1
    assert world.live_ours() == set()
    assert world.jit_params() == set()
    assert sim.github.all_runner_names() == set()
    assert not sim.queued_jobs(), "a job GitHub queued never got a runner"
