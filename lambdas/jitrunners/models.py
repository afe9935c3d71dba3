"""Typed inputs and outputs: the workflow_job payload we use and the SQS job message (DESIGN §4)."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Final, Literal

MESSAGE_VERSION: Final = 1
# launch and start (DESIGN §4), and three kinds that keep the books by job (DESIGN §6b), all from
# webhook deliveries (the webhook alone knows which runner ran a job: runners are fungible, so an
# instance's job tags may name another job):
# - rerun: a job failed on one of our runners; scale-up checks whether a spot reclaim killed it
#   and, if so, re-runs it (and records which runner ran it, as `taken` does);
# - taken: a job is running or ran on one of our runners (`in_progress`, `completed`): when that
#   runner was launched for another job, the need it was launched for moves on (a swap);
# - release: a job no longer wants a runner for now (cancelled before any runner took it, or
#   `waiting` for an approval): the runners launched for it and still idle are stopped.
MessageKind = Literal["launch", "start", "rerun", "taken", "release"]
_KINDS: Final = ("launch", "start", "rerun", "taken", "release")
# Kinds that name the instance they concern.
_INSTANCE_KINDS: Final = ("start", "rerun", "taken")
INSTANCE_ID_RE: Final = re.compile(r"^i-[0-9a-f]{8,17}$")
# Our runners are named after their instance and the job attempt it was launched for
# (README "The scale-up Lambda"; DESIGN's "runner name = instance id", extended so that the name
# still leads with the instance): `i-0123456789abcdef0-4242-1`. A warm pool's members say so
# (README "Warm pools"): a hot member, registered for no job, is `i-0123456789abcdef0-hot`; a
# stopped member started for a job is `i-0123456789abcdef0-4242-1-stopped`. A runner named like a
# bare instance id (older runners) is ours too.
# The webhook tells a runner that took the job it was launched for from a swap by the name alone,
# and which path served the job (cold, stopped or hot: the QueueToRunnerLatency dimension).
RUNNER_NAME_RE: Final = re.compile(
    r"^(i-[0-9a-f]{8,17})(?:-([0-9]{1,19})-([0-9]{1,9})(-stopped)?|(-hot))?$"
)
COLD: Final = "cold"
RunnerPath = Literal["cold", "stopped", "hot"]


def aware_instant(value: Any) -> datetime | None:
    """An ISO-8601 instant with its offset (GitHub's `Z`, or `+00:00`: payloads, tags, records);
    None when it is missing, not a string, malformed, or has no offset."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def runner_name(
    instance_id: str, job_id: int | None, run_attempt: int | None, path: str = COLD
) -> str:
    """The name our runner on `instance_id`, launched for that job attempt, registers with
    (`path`: "cold", a fresh instance; "stopped" or "hot", a pool member)."""
    if path == "hot":
        return f"{instance_id}-hot"
    if job_id is None or run_attempt is None:
        return instance_id
    return f"{instance_id}-{job_id}-{run_attempt}" + ("-stopped" if path == "stopped" else "")


def runner_instance(name: str | None) -> str | None:
    """The instance id a runner name of ours names, or None (not named like ours)."""
    found = RUNNER_NAME_RE.fullmatch(name or "")
    return found.group(1) if found else None


def runner_launched_for(name: str | None) -> tuple[int, int] | None:
    """(job id, run attempt) the runner was launched for, when its name says."""
    found = RUNNER_NAME_RE.fullmatch(name or "")
    if not found or found.group(2) is None:
        return None
    return int(found.group(2)), int(found.group(3))


def runner_path(name: str | None) -> RunnerPath | None:
    """How the named runner of ours came to be: "hot" or "stopped" (a warm pool's member) or
    "cold" (an instance launched for the job); None when the name is not ours."""
    found = RUNNER_NAME_RE.fullmatch(name or "")
    if not found:
        return None
    if found.group(5):
        return "hot"
    return "stopped" if found.group(4) else "cold"


class PayloadError(ValueError):
    """A webhook payload lacks a field we need or has it in the wrong shape."""


class MessageError(ValueError):
    """A job message is not one we understand (unknown version, missing or bad field)."""


def _get(data: Any, path: str, kind: type | tuple[type, ...]) -> Any:
    node = data
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise PayloadError(f"missing field {path}")
        node = node[key]
    # bool is a subclass of int: never accept true/false where an id is expected.
    if not isinstance(node, kind) or (isinstance(node, bool) and bool not in _as_tuple(kind)):
        raise PayloadError(f"field {path} has the wrong type")
    return node


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _positive(data: Any, path: str) -> int:
    value = _get(data, path, int)
    if value <= 0:
        raise PayloadError(f"field {path} must be positive")
    return int(value)


@dataclass(frozen=True, slots=True)
class WorkflowJob:
    """The parts of a `workflow_job` webhook payload that jitrunners acts on."""

    action: str
    job_id: int
    run_id: int
    run_attempt: int
    labels: tuple[str, ...]
    repo: str  # "owner/name"
    owner: str
    private: bool
    installation_id: int | None
    queued_at: str
    conclusion: str = ""  # completed jobs: success, failure, cancelled, ...
    runner_name: str = ""  # the runner that took the job (in_progress, completed)

    @classmethod
    def from_payload(cls, payload: Any) -> WorkflowJob:
        if not isinstance(payload, dict):
            raise PayloadError("payload must be a JSON object")
        action = _get(payload, "action", str)
        labels = _get(payload, "workflow_job.labels", list)
        if not all(isinstance(label, str) for label in labels):
            raise PayloadError("field workflow_job.labels must be a list of strings")
        repo = _get(payload, "repository.full_name", str)
        _get(payload, "repository.owner.login", str)
        owner, _, name = repo.partition("/")
        if not owner or not name or "/" in name or len(repo) > 256:
            raise PayloadError("field repository.full_name must be '<owner>/<name>'")
        # The owner is the one full_name names (what every REST path uses); GitHub's own example
        # deliveries show an owner.login that differs from it, so the two are not compared.
        installation = payload.get("installation")
        installation_id: int | None = None
        if installation is not None:
            installation_id = _positive(payload, "installation.id")
        private = payload["repository"].get("private", False)
        visibility = payload["repository"].get("visibility")
        if not isinstance(private, bool):
            raise PayloadError("field repository.private has the wrong type")
        queued_at = payload["workflow_job"].get("created_at") or ""
        conclusion = payload["workflow_job"].get("conclusion") or ""
        runner_name = payload["workflow_job"].get("runner_name") or ""
        return cls(
            action=action,
            job_id=_positive(payload, "workflow_job.id"),
            run_id=_positive(payload, "workflow_job.run_id"),
            run_attempt=_positive(payload, "workflow_job.run_attempt"),
            labels=tuple(labels),
            repo=repo,
            owner=owner,
            # "internal" repositories are private to the enterprise; only "public" is public.
            private=private and visibility != "public",
            installation_id=installation_id,
            queued_at=queued_at if isinstance(queued_at, str) else "",
            conclusion=conclusion[:50] if isinstance(conclusion, str) else "",
            runner_name=runner_name[:100] if isinstance(runner_name, str) else "",
        )


@dataclass(frozen=True, slots=True)
class JobMessage:
    """One SQS job message (DESIGN §4). `attempt` counts launches of this job, starting at 1."""

    kind: MessageKind
    job_id: int
    run_id: int
    run_attempt: int
    repo: str
    owner: str
    installation_id: int | None
    labels: tuple[str, ...]
    template: str
    delivery_id: str
    queued_at: str
    attempt: int = 1
    instance_id: str | None = None
    # How often the redrive Lambda moved this message from the DLQ back (optional in v1 bodies).
    redrives: int = 0
    # A start of a claimed stopped pool member: "stopped" (README "Warm pools"); "" otherwise.
    pool: str = ""
    # A start whose JIT config the launch stored while the instance booted (optional in v1).
    jit_stored: bool = False
    v: int = MESSAGE_VERSION

    @classmethod
    def launch_for(cls, job: WorkflowJob, template: str, delivery_id: str) -> JobMessage:
        return cls(
            kind="launch",
            job_id=job.job_id,
            run_id=job.run_id,
            run_attempt=job.run_attempt,
            repo=job.repo,
            owner=job.owner,
            installation_id=job.installation_id,
            labels=job.labels,
            template=template,
            delivery_id=delivery_id,
            queued_at=job.queued_at,
        )

    @classmethod
    def rerun_check_for(cls, job: WorkflowJob, template: str, delivery_id: str) -> JobMessage:
        """A failed job and the runner (instance) it failed on, to be checked for a spot reclaim."""
        return replace(
            cls.launch_for(job, template, delivery_id),
            kind="rerun",
            instance_id=runner_instance(job.runner_name),
        )

    def taken_by(self, instance_id: str | None) -> JobMessage:
        """This job ran (or runs) on our runner on `instance_id`: the swap bookkeeping's
        message."""
        return replace(self, kind="taken", instance_id=instance_id)

    def released(self) -> JobMessage:
        """This job wants no runner for now (cancelled while queued, or waiting for approval)."""
        return replace(self, kind="release", instance_id=None)

    def start_for(
        self, instance_id: str, pool: str = "", *, jit_stored: bool = False
    ) -> JobMessage:
        return replace(
            self, kind="start", instance_id=instance_id, pool=pool, jit_stored=jit_stored
        )

    def relaunch(self) -> JobMessage:
        """The `launch` message that replaces a failed start: one more attempt, no instance."""
        return replace(
            self,
            kind="launch",
            instance_id=None,
            attempt=self.attempt + 1,
            pool="",
            jit_stored=False,
        )

    def redriven(self) -> JobMessage:
        """The same message, counted once more as moved from the DLQ back to the job queue."""
        return replace(self, redrives=self.redrives + 1)

    def to_json(self) -> str:
        body = asdict(self)
        body["labels"] = list(self.labels)
        if self.kind in ("launch", "release"):
            body.pop("instance_id")
        if not self.redrives:
            # Bodies of never-redriven messages stay byte-identical to those before the field.
            body.pop("redrives")
        if not self.pool:
            body.pop("pool")
        if not self.jit_stored:
            body.pop("jit_stored")
        return json.dumps(body, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobMessage:
        try:
            data = json.loads(text)
        except (TypeError, ValueError):
            raise MessageError("message body is not JSON") from None
        if not isinstance(data, dict):
            raise MessageError("message body is not a JSON object")
        version = data.get("v")
        if version != MESSAGE_VERSION:
            raise MessageError(f"unsupported message version {version!r}")
        kind = data.get("kind")
        if kind not in _KINDS:
            raise MessageError(f"unknown message kind {kind!r}")
        try:
            message = cls(
                kind=kind,
                job_id=_need(data, "job_id", int),
                run_id=_need(data, "run_id", int),
                run_attempt=_need(data, "run_attempt", int),
                repo=_need(data, "repo", str),
                owner=_need(data, "owner", str),
                installation_id=data.get("installation_id"),
                labels=tuple(_need(data, "labels", list)),
                template=_need(data, "template", str),
                delivery_id=_need(data, "delivery_id", str),
                queued_at=str(data.get("queued_at") or ""),
                attempt=_need(data, "attempt", int),
                instance_id=data.get("instance_id"),
                redrives=_optional_count(data, "redrives"),
                pool=str(data.get("pool") or ""),
                jit_stored=data.get("jit_stored", False),
            )
        except KeyError as exc:
            raise MessageError(
                f"message field {exc.args[0]} is missing or has the wrong type"
            ) from None
        if kind in _INSTANCE_KINDS and not isinstance(message.instance_id, str):
            raise MessageError(f"a {kind} message needs instance_id")
        if message.instance_id is not None and (
            not isinstance(message.instance_id, str)
            or not INSTANCE_ID_RE.fullmatch(message.instance_id)
        ):
            # It reaches EC2 and SSM calls and a RunCommand's parameter name: only an id's shape.
            raise MessageError("message field instance_id is not an EC2 instance id")
        if message.pool not in ("", "stopped"):
            raise MessageError("message field pool must be 'stopped' when present")
        if not isinstance(message.jit_stored, bool) or (message.jit_stored and kind != "start"):
            raise MessageError("message field jit_stored must be a boolean, on a start only")
        if message.installation_id is not None and (
            isinstance(message.installation_id, bool)
            or not isinstance(message.installation_id, int)
        ):
            raise MessageError("message field installation_id has the wrong type")
        return message

    def log_keys(self) -> dict[str, Any]:
        """Correlation keys for Powertools Logger (DESIGN §5)."""
        keys: dict[str, Any] = {
            "job_id": self.job_id,
            "delivery_id": self.delivery_id,
            "repo": self.repo,
            "template": self.template,
        }
        if self.instance_id:
            keys["instance_id"] = self.instance_id
        return keys


POOL_ACTIONS: Final = ("fill", "ready")


@dataclass(frozen=True, slots=True)
class PoolMessage:
    """A warm pool's own message on the job queue (README "Warm pools"; docs/contracts.md):
    `fill` launches up to `count` members of a template's pool, `ready` makes one launched member
    ready once its SSM agent is online (a hot member's runner started, a stopped one stopped)."""

    action: str
    template: str
    pool: str  # "hot" | "stopped"
    count: int = 1
    instance_id: str | None = None
    kind: str = "pool"
    v: int = MESSAGE_VERSION

    def to_json(self) -> str:
        body = asdict(self)
        if self.instance_id is None:
            body.pop("instance_id")
        return json.dumps(body, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> PoolMessage:
        try:
            message = cls(
                action=_need(data, "action", str),
                template=_need(data, "template", str),
                pool=_need(data, "pool", str),
                count=_need(data, "count", int),
                instance_id=data.get("instance_id"),
            )
        except KeyError as exc:
            raise MessageError(
                f"message field {exc.args[0]} is missing or has the wrong type"
            ) from None
        if message.action not in POOL_ACTIONS:
            raise MessageError(f"unknown pool action {message.action!r}")
        if message.pool not in ("hot", "stopped"):
            raise MessageError(f"unknown pool kind {message.pool!r}")
        if not 1 <= message.count <= 100:
            raise MessageError("message field count must be 1 to 100")
        if message.action == "ready" and not (
            isinstance(message.instance_id, str) and INSTANCE_ID_RE.fullmatch(message.instance_id)
        ):
            raise MessageError("a pool ready message needs an EC2 instance id")
        return message

    def log_keys(self) -> dict[str, Any]:
        keys: dict[str, Any] = {"template": self.template, "pool": self.pool}
        if self.instance_id:
            keys["instance_id"] = self.instance_id
        return keys


def parse_message(text: str) -> JobMessage | PoolMessage:
    """A job queue message of either family (MessageError when it is neither)."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        raise MessageError("message body is not JSON") from None
    if isinstance(data, dict) and data.get("kind") == "pool":
        if data.get("v") != MESSAGE_VERSION:
            raise MessageError(f"unsupported message version {data.get('v')!r}")
        return PoolMessage.from_data(data)
    return JobMessage.from_json(text)


def _need(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise KeyError(key)
    return value


def _optional_count(data: dict[str, Any], key: str) -> int:
    value = data.get(key, 0)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise KeyError(key)
    return value
