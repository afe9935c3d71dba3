"""Scale-up's batch: the job queue's records dispatched to their stage (launch and start:
provisioning; taken and release: the job books; rerun: recovery), launches planned for the whole
batch at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from jitrunners.lifecycle.provisioning import boundary
from jitrunners.lifecycle.records import (
    Outcome,
    Record,
    RecordFailed,
    ScaleUpDeps,
    correlated,
    fail,
)
from jitrunners.models import JobMessage, MessageError, PoolMessage, parse_message
from jitrunners.observability import count, logger

# Back-off before a `taken` or `release` message whose AWS or queue call failed is tried again.
BOOKS_RETRY_S = 30


class ScaleUpBatch:
    """Launches are decided for the whole batch at once (fewest EC2 calls); the record handler
    then reports each record's outcome. Starts are handled record by record."""

    def __init__(self, deps: ScaleUpDeps) -> None:
        self.deps = deps
        self.outcomes: dict[str, Outcome] = {}
        # The instances the batch's start, taken and rerun messages name, described in one call
        # (None: not ours, or EC2 does not list it); ids missing here are described one by one.
        self.described: dict[str, Any] = {}
        # Of the instances the batch's `start` and pool `ready` messages name, those whose SSM
        # agent is online; None when SSM could not say (then a start just tries its command).
        self.online: set[str] | None = None
        # Our live instances, for the batch's job books (see _live_instances).
        self._live: list[Any] | None = None
        # The batch describe's throttle, raised again where one of its instances is needed.
        self._describe_error: Exception | None = None
        # The runners the batch's `taken` and `rerun` messages name, and the job-ran claims of
        # the jobs they were launched for (read once, when a swap's books first need one).
        self._takers: set[str] = set()
        self._ran: dict[str, str] | None = None

    def prepare(self, raw_records: Sequence[Mapping[str, Any]]) -> None:
        from jitrunners.lifecycle.provisioning.launch import plan_launches

        launches: list[tuple[Record, JobMessage]] = []
        named: set[str] = set()
        agents: set[str] = set()  # instances whose agent the batch's starts and pools ask about
        for raw in raw_records:
            record = Record.from_event(raw)
            try:
                message = parse_message(record.body)
            except MessageError:
                continue  # the record handler fails it, with the reason
            if isinstance(message, PoolMessage):
                if message.instance_id:
                    named.add(message.instance_id)
                    agents.add(message.instance_id)
            elif message.kind == "launch":
                launches.append((record, message))
            elif message.instance_id:
                named.add(message.instance_id)
                if message.kind == "start":
                    agents.add(message.instance_id)
                elif message.kind in ("taken", "rerun"):
                    self._takers.add(message.instance_id)
        if named:
            self._describe_all(sorted(named))
        if agents:
            self._ask_agents(sorted(agents))
        if launches:
            self.outcomes.update(plan_launches(launches, self.deps))

    def _describe_all(self, instance_ids: Sequence[str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        from jitrunners.aws import fleet

        settings = self.deps.settings
        try:
            found = fleet.list_instances(
                settings.prefix,
                fleet.ALL_STATES,
                instance_ids=instance_ids,
                profile_arn=settings.runner_instance_profile_arn,
            )
        except (ClientError, BotoCoreError) as exc:
            from jitrunners.aws.clients import throttled

            if throttled(exc):
                # Not one by one into a throttled bucket: each record that needs one of these
                # instances goes back to the queue for a few seconds instead (`describe`).
                self._describe_error = exc
                logger.info("batch describe throttled", extra={"detail": str(exc)})
            else:
                logger.info(
                    "batch describe failed: instances looked up one by one",
                    extra={"detail": str(exc)},
                )
            return
        by_id = {i.id: i for i in found}
        self.described = {i: by_id.get(i) for i in instance_ids}

    def _ask_agents(self, instance_ids: Sequence[str]) -> None:
        """One DescribeInstanceInformation for every instance the batch starts or makes ready."""
        from botocore.exceptions import BotoCoreError, ClientError

        from jitrunners.aws import ssm

        try:
            self.online = ssm.agents_online(instance_ids)
        except (ClientError, BotoCoreError) as exc:
            logger.info("cannot ask which agents are online", extra={"detail": str(exc)})

    def agent_online(self, instance_id: str) -> bool | None:
        """Whether the instance's SSM agent was online when the batch asked (None: unknown)."""
        return None if self.online is None else instance_id in self.online

    def describe(self, instance_id: str) -> Any:
        """The instance as described for this batch, or one DescribeInstances now."""
        from jitrunners.aws import fleet

        if instance_id in self.described:
            return self.described[instance_id]
        if self._describe_error is not None:
            raise self._describe_error
        settings = self.deps.settings
        return fleet.get_instance(
            instance_id, settings.prefix, settings.runner_instance_profile_arn
        )

    def handle(self, record: Any) -> str:
        """Powertools' record handler (it passes `record=`, an SQSRecord)."""
        return self._handle(Record.from_event(record.raw_event))

    def _handle(self, record: Record) -> str:
        try:
            parsed = parse_message(record.body)
        except MessageError as exc:
            count("MessageRejected", reason="invalid_message")
            logger.error(
                "job message rejected: it will reach the DLQ",
                extra={"reason": str(exc), "message_id": record.message_id},
            )
            raise
        if isinstance(parsed, PoolMessage):
            with correlated(parsed):
                try:
                    return self._pool(parsed, record)
                except RecordFailed as failure:
                    fail(record, self.deps, failure)
        message = parsed
        with correlated(message):
            if message.kind in ("taken", "release"):
                try:
                    return self._books(message)
                except RecordFailed as failure:
                    fail(record, self.deps, failure)
            if message.kind == "rerun":
                # The failed job ran on this runner: the books first (its `in_progress` may be
                # lost), then the re-run check.
                if boundary.refused_repository(message, self.deps.settings):
                    return "refused"
                try:
                    return self._books(replace(message, kind="taken"), failed=True)
                except RecordFailed as failure:
                    fail(record, self.deps, failure)
            if message.kind == "start":
                try:
                    return self._start(message, record)
                except RecordFailed as failure:
                    fail(record, self.deps, failure)
            outcome = self.outcomes.get(record.message_id)
            if outcome is None:  # cannot happen: prepare() saw every record
                raise RecordFailed("launch not planned")
            if outcome.failure is not None:
                fail(record, self.deps, outcome.failure)
            return outcome.result

    def _live_instances(self) -> list[Any]:
        """Our live instances, listed once per batch when its job books first need them (after
        the batch's launches), and kept current by the bookkeeping's tag writes."""
        if self._live is None:
            from jitrunners.aws import fleet

            settings = self.deps.settings
            self._live = fleet.list_instances(
                settings.prefix, profile_arn=settings.runner_instance_profile_arn
            )
        return self._live

    def _ran_on(self, job: JobMessage) -> str | None:
        """The runner of ours that job `job` ran on (ENDED_ELSEWHERE: it ended without one of
        ours), by the webhook's job-ran claims; None when none is recorded (or the table cannot
        say: the need is passed on, as without them).

        One BatchGetItem for the batch, on its first use: the claims of every job that the
        runners its `taken` messages name were launched for."""
        from jitrunners.aws import deliveries
        from jitrunners.lifecycle.provisioning.tags import launched_for

        table = self.deps.settings.deliveries_table
        if not table:
            return None
        if self._ran is None:
            owed = [
                launched_for(runner, self.deps.template(str(runner.template or "")))
                for runner in (self.described.get(i) for i in sorted(self._takers))
                if runner is not None
            ]
            try:
                self._ran = deliveries.jobs_ran(
                    table,
                    (
                        k
                        for o in [*owed, job]
                        if o is not None
                        for k in deliveries.ran_keys(o.repo, o.job_id, o.run_attempt)
                    ),
                    now=self.deps.clock(),
                )
            except deliveries.DeliveryStoreError as exc:
                logger.info("cannot read the job-ran records", extra={"detail": str(exc)})
                self._ran = {}
        return deliveries.taker(self._ran, job.repo, job.job_id, job.run_attempt)

    def _start(self, message: JobMessage, record: Record) -> str:
        """A `start`; an AWS throttle (after botocore's one quick retry) sends the record back
        for a few seconds instead of waiting here. Every step of a start is idempotent."""
        from botocore.exceptions import ClientError

        from jitrunners.aws.clients import error_code, throttle_delay_s, throttled
        from jitrunners.lifecycle.provisioning.start import start_runner

        try:
            return start_runner(message, record, self.deps, self.describe, self.agent_online)
        except ClientError as exc:
            if not throttled(exc):
                raise
            count("StartFailed", reason="aws_throttled")
            logger.warning("AWS throttled the start: retried", extra={"code": error_code(exc)})
            raise RecordFailed("aws throttled", throttle_delay_s()) from None

    def _pool(self, message: PoolMessage, record: Record) -> str:
        """A warm pool's `fill` or `ready` message (README "Warm pools")."""
        from botocore.exceptions import BotoCoreError, ClientError

        from jitrunners.aws.queue import QueueError
        from jitrunners.lifecycle.provisioning import headcount, pool

        try:
            if message.action == "fill":
                outcome = pool.fill(message, self.deps, pool.describe_for_pool(self.deps))
                headcount.reset()  # members launched: the next launch batch lists them
            else:
                outcome = pool.make_ready(
                    message, record, self.deps, self.describe, self.agent_online
                )
        except (ClientError, BotoCoreError, QueueError) as exc:
            logger.warning("pool message failed: retried", extra={"detail": str(exc)})
            raise RecordFailed("pool message failed", BOOKS_RETRY_S) from None
        logger.info("pool", extra={"action": message.action, "outcome": outcome})
        return outcome

    def _books(self, message: JobMessage, *, failed: bool = False) -> str:
        """`taken` and `release` messages: keep the books by job (DESIGN §6b). A job taken by a
        runner that a spot reclaim has ended (or that failed on one of ours: `failed`) also gets
        its re-run check, named exactly by the delivery whatever job the runner was launched for
        or its tags say."""
        from botocore.exceptions import BotoCoreError, ClientError

        from jitrunners.aws.queue import QueueError
        from jitrunners.lifecycle.provisioning import bookkeeping

        try:
            if message.kind == "release":
                outcome = bookkeeping.release_job(message, self.deps)
                logger.info("job bookkeeping", extra={"kind": message.kind, "outcome": outcome})
                return outcome
            assert message.instance_id is not None  # JobMessage.from_json guarantees it
            runner = self.describe(message.instance_id)
            outcome = (
                "not_ours"
                if runner is None
                else bookkeeping.keep_books(
                    message, runner, self.deps, self._live_instances, self._ran_on
                )
            )
            # Its tags may have been rewritten: a later message of the batch sees them as the
            # shared listing now has them, or looks again.
            fresh = next((i for i in self._live or () if i.id == message.instance_id), None)
            if fresh is not None:
                self.described[message.instance_id] = fresh
            else:
                self.described.pop(message.instance_id, None)
        except (ClientError, BotoCoreError, QueueError) as exc:
            # Every step is idempotent: the whole message is tried again.
            logger.warning("job bookkeeping failed: retried", extra={"detail": str(exc)})
            raise RecordFailed("bookkeeping failed", BOOKS_RETRY_S) from None
        logger.info("job bookkeeping", extra={"kind": message.kind, "outcome": outcome})
        if runner is None or not self.deps.settings.rerun_interrupted_jobs:
            return outcome
        if failed or runner.spot_reclaimed:
            # An `in_progress` (or `completed`) naming a reclaimed runner is often the only
            # trace of the job it killed: the interruption's record names the job in the
            # runner's tags, which a swap may not have rewritten before the instance went.
            return f"{outcome};{self._rerun_check(message, runner)}"
        return outcome

    def _rerun_check(self, message: JobMessage, runner: Any) -> str:
        from jitrunners.lifecycle.cleanup import Context
        from jitrunners.lifecycle.recovery.rerun import check_failed_job

        deps = self.deps
        ctx = Context.build(deps.settings, deps.templates(), deps.github(), deps.clock)
        outcome = check_failed_job(message, ctx, runner)
        if outcome.startswith("wait:github") or outcome == "wait:claim_failed":
            # The pending record is written: the housekeeper advances it if we cannot now.
            logger.info("re-run check left to the housekeeper", extra={"outcome": outcome})
        return outcome
