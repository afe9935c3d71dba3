"""Kill switch and spot-only mode: engaged by the budget guard or an operator, lifted by one.

Kill switch (DESIGN 5b): reserved concurrency 0 on the webhook and scale-up functions AND the job
queue's event source mapping disabled, so queued jobs wait in the queue (a throttled poller would
keep receiving and push them toward the DLQ). Spot-only: launches use spot capacity alone.

State lives in SSM under `/<prefix>/state/guard/` (String parameters, no secret):
- `kill-switch`, `spot-only`: present exactly while that mode is engaged at runtime; the value
  says since when, by whom, from where and why. Terraform reads whether `kill-switch` exists
  (terraform/main.tf `local.kill_switch`), so an unrelated `terraform apply` keeps a runtime
  engagement instead of undoing it; only a lift removes it.
- `history`: overwritten at every engage and lift; SSM keeps its last 100 versions, each with the
  IAM identity that wrote it (`aws ssm get-parameter-history`): the audit trail of the modes.
`/<prefix>/config/kill-switch` is Terraform's: its `kill_switch` variable and the reserved
concurrency the functions get when the switch is off, which a lift restores.

Shared by the budget guard Lambda (jitrunners.budget) and the operator CLI (jitrunners_cli).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from jitrunners.aws import functions
from jitrunners.aws.clients import client, error_code
from jitrunners.observability import logger

KILL_SWITCH = "kill-switch"
SPOT_ONLY = "spot-only"
MODES = (KILL_SWITCH, SPOT_ONLY)
# Reserved concurrency 0 on these (function keys, as terraform/documents.tf names them) ...
STOPPED_FUNCTIONS = ("webhook", "scale-up")
# ... and this one's event source mapping (the job queue) disabled.
QUEUE_CONSUMER = "scale-up"
# How long scale-up trusts what it last read of spot-only (one SSM read per minute per container).
SPOT_ONLY_CACHE_S = 60.0


class GuardError(RuntimeError):
    """The mode could not be changed as asked; the message says why and what to do."""


class HeldByTerraform(GuardError):
    """Terraform's own `kill_switch = true` holds the switch: a lift would be undone by the next
    apply, so it is refused."""


def function_name(prefix: str, key: str) -> str:
    return f"{prefix}-{key}"


def guard_path(prefix: str) -> str:
    return f"/{prefix}/state/guard"


def record_name(prefix: str, mode: str) -> str:
    if mode not in (*MODES, "history"):
        raise ValueError(f"unknown guard record {mode!r}")
    return f"{guard_path(prefix)}/{mode}"


def terraform_setting_name(prefix: str) -> str:
    return f"/{prefix}/config/kill-switch"


@dataclass(frozen=True, slots=True)
class Record:
    """One mode engaged: since when, by whom (an IAM ARN), from where (budget, cli), why."""

    since: str
    by: str
    source: str
    reason: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Record:
        try:
            data = json.loads(text)
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        # A record someone wrote by hand still means "engaged": unknown fields read as "".
        return cls(**{k: str(data.get(k, "")) for k in ("since", "by", "source", "reason")})


@dataclass(frozen=True, slots=True)
class Change:
    """What one engage or lift did."""

    mode: str
    engaged: bool  # the mode's state after the change
    already: bool  # it was in that state before (the change re-applied it, harmlessly)
    actions: tuple[str, ...] = ()  # what was changed in AWS, for people


@dataclass(frozen=True, slots=True)
class TerraformSetting:
    """What `terraform apply` set: its kill_switch variable and the reserved concurrency the
    stopped functions have when the switch is off (None: unreserved)."""

    kill_switch: bool
    reserved: dict[str, int | None] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> TerraformSetting:
        data = json.loads(text)
        reserved = {}
        for key, value in dict(data.get("reserved_concurrency") or {}).items():
            number = int(value)
            reserved[str(key)] = None if number < 0 else number
        return cls(kill_switch=bool(data.get("kill_switch")), reserved=reserved)


# ------------------------------------------------------------------------------ records (SSM)
def read_record(prefix: str, mode: str) -> Record | None:
    """The mode's record; None when the mode is not engaged at runtime."""
    try:
        answer = client("ssm").get_parameter(Name=record_name(prefix, mode))
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            return None
        raise
    return Record.from_json(str(answer["Parameter"]["Value"]))


def _put(name: str, value: str) -> None:
    client("ssm").put_parameter(Name=name, Value=value, Type="String", Overwrite=True)


def _remove_record(prefix: str, mode: str) -> bool:
    try:
        client("ssm").delete_parameter(Name=record_name(prefix, mode))
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            return False
        raise
    return True


def _history(prefix: str, mode: str, engaged: bool, record: Record, now: datetime) -> None:
    entry = {"mode": mode, "engaged": engaged, "at": now.isoformat(), **asdict(record)}
    _put(record_name(prefix, "history"), json.dumps(entry, separators=(",", ":"), sort_keys=True))


def _engage_record(
    prefix: str, mode: str, *, by: str, source: str, reason: str, now: datetime
) -> bool:
    """Write the mode's record (keeping the time of an engagement already on); True if it was on."""
    previous = read_record(prefix, mode)
    since = previous.since if previous and previous.since else now.isoformat()
    record = Record(since=since, by=by, source=source, reason=reason)
    _put(record_name(prefix, mode), record.to_json())
    _history(prefix, mode, True, record, now)
    return previous is not None


# ------------------------------------------------------------------------------ kill switch
def engage_kill_switch(prefix: str, *, by: str, source: str, reason: str, now: datetime) -> Change:
    """Stop taking and starting jobs without losing any: the mapping first (no more receives),
    then reserved concurrency 0 on webhook and scale-up. Idempotent.

    Raises GuardError after doing the rest when the job queue has no mapping to disable: with
    concurrency 0 alone a poller would be throttled and drift queued jobs into the DLQ.
    """
    consumer = function_name(prefix, QUEUE_CONSUMER)
    actions: list[str] = []
    mappings = list(functions.mappings_of(consumer))
    for mapping in mappings:
        if mapping.polling:
            functions.set_mapping_enabled(mapping.uuid, False)
            actions.append(f"event source mapping {mapping.uuid} ({consumer}) disabled")
    for key in STOPPED_FUNCTIONS:
        functions.zero_concurrency(function_name(prefix, key))
        actions.append(f"{function_name(prefix, key)}: reserved concurrency 0")
    already = _engage_record(prefix, KILL_SWITCH, by=by, source=source, reason=reason, now=now)
    if not mappings:
        raise GuardError(
            f"no event source mapping invokes {consumer}: concurrency is 0, but a poller that"
            " is not disabled would move queued jobs toward the DLQ; check the deployment"
        )
    return Change(KILL_SWITCH, engaged=True, already=already, actions=tuple(actions))


def terraform_setting(prefix: str) -> TerraformSetting:
    """Terraform's kill-switch setting (`/<prefix>/config/kill-switch`, written by the module)."""
    name = terraform_setting_name(prefix)
    try:
        answer = client("ssm").get_parameter(Name=name)
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            raise GuardError(
                f"{name} not found: the Terraform module writes it (is the prefix right, and"
                " the module applied at this version?)"
            ) from None
        raise
    try:
        return TerraformSetting.from_json(str(answer["Parameter"]["Value"]))
    except (ValueError, TypeError, AttributeError) as exc:
        raise GuardError(f"{name} is not the module's JSON ({exc})") from None


def lift_kill_switch(prefix: str, *, by: str, source: str, reason: str, now: datetime) -> Change:
    """Take jobs again: the functions get back the reserved concurrency Terraform gives them,
    then the mapping polls again (so no receive meets a throttled function). Refused while
    Terraform's own `kill_switch = true` holds the switch."""
    setting = terraform_setting(prefix)
    if setting.kill_switch:
        also = (
            ", then run this again (the runtime engagement stays until lifted)"
            if read_record(prefix, KILL_SWITCH)
            else ""
        )
        raise HeldByTerraform(
            "Terraform holds the kill switch (kill_switch = true): lifting it here would last"
            f" until the next terraform apply; set kill_switch = false and apply instead{also}"
        )
    missing = [key for key in STOPPED_FUNCTIONS if key not in setting.reserved]
    if missing:
        raise GuardError(
            f"{terraform_setting_name(prefix)} has no reserved concurrency for"
            f" {', '.join(missing)}: nothing to restore (re-apply the module)"
        )
    actions: list[str] = []
    for key in STOPPED_FUNCTIONS:
        name = function_name(prefix, key)
        value = setting.reserved[key]
        functions.restore_concurrency(name, value)
        actions.append(f"{name}: reserved concurrency {'unreserved' if value is None else value}")
    consumer = function_name(prefix, QUEUE_CONSUMER)
    for mapping in functions.mappings_of(consumer):
        if not mapping.polling:
            functions.set_mapping_enabled(mapping.uuid, True)
            actions.append(f"event source mapping {mapping.uuid} ({consumer}) enabled")
    _history(prefix, KILL_SWITCH, False, Record(now.isoformat(), by, source, reason), now)
    was_on = _remove_record(prefix, KILL_SWITCH)
    return Change(KILL_SWITCH, engaged=False, already=not was_on, actions=tuple(actions))


@dataclass(frozen=True, slots=True)
class KillSwitchState:
    """The kill switch as AWS has it now, and who asked for it."""

    record: Record | None  # engaged at runtime (budget guard or operator)
    setting: TerraformSetting | None  # None when the module's setting is unreadable
    concurrency: dict[str, int | None]  # function name -> reserved concurrency
    mappings: tuple[functions.EventSourceMapping, ...]

    @property
    def stopped(self) -> bool:
        """Nothing is taken or started: every stopped function at 0, no mapping polling."""
        return all(v == 0 for v in self.concurrency.values()) and not any(
            m.polling for m in self.mappings
        )

    @property
    def partial(self) -> bool:
        """Some of the switch is on and some off (an interrupted change, or a hand edit)."""
        zeros = [v == 0 for v in self.concurrency.values()]
        paused = [not m.polling for m in self.mappings]
        parts = zeros + paused
        return any(parts) and not all(parts)

    @property
    def held_by(self) -> str:
        """Who holds the switch: "runtime", "terraform", "both", or "" when it is off."""
        runtime = self.record is not None
        terraform = bool(self.setting and self.setting.kill_switch)
        return {(True, True): "both", (True, False): "runtime", (False, True): "terraform"}.get(
            (runtime, terraform), ""
        )


def webhook_stopped(prefix: str) -> bool:
    """Whether the kill switch holds the webhook (engaged at runtime, or `kill_switch = true`
    in Terraform): two SSM reads, for the housekeeper, which must not spend its one redelivery
    request per failed delivery on a webhook that refuses everything."""
    if read_record(prefix, KILL_SWITCH) is not None:
        return True
    try:
        return terraform_setting(prefix).kill_switch
    except GuardError:
        return False  # a module without the setting has no Terraform-held switch


def kill_switch_state(prefix: str) -> KillSwitchState:
    """Read the record, Terraform's setting, each stopped function's concurrency and the
    consumer's mappings. FunctionNotFound when the deployment is not there."""
    try:
        setting: TerraformSetting | None = terraform_setting(prefix)
    except GuardError:
        setting = None
    concurrency = {
        function_name(prefix, key): functions.reserved_concurrency(function_name(prefix, key))
        for key in STOPPED_FUNCTIONS
    }
    mappings = tuple(functions.mappings_of(function_name(prefix, QUEUE_CONSUMER)))
    return KillSwitchState(read_record(prefix, KILL_SWITCH), setting, concurrency, mappings)


# ------------------------------------------------------------------------------ spot-only
def engage_spot_only(prefix: str, *, by: str, source: str, reason: str, now: datetime) -> Change:
    """From now on (within SPOT_ONLY_CACHE_S for warm scale-up containers) launches use spot."""
    already = _engage_record(prefix, SPOT_ONLY, by=by, source=source, reason=reason, now=now)
    return Change(SPOT_ONLY, engaged=True, already=already, actions=("launches: spot only",))


def lift_spot_only(prefix: str, *, by: str, source: str, reason: str, now: datetime) -> Change:
    _history(prefix, SPOT_ONLY, False, Record(now.isoformat(), by, source, reason), now)
    was_on = _remove_record(prefix, SPOT_ONLY)
    return Change(
        SPOT_ONLY, engaged=False, already=not was_on, actions=("launches: each template's market",)
    )


class _SpotOnlyCache:
    """What scale-up last read of the spot-only record, per prefix, for SPOT_ONLY_CACHE_S."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, bool]] = {}

    def get(self, prefix: str, clock: Callable[[], float]) -> bool:
        now = clock()
        with self._lock:
            known = self._known.get(prefix)
        if known is not None and now - known[0] < SPOT_ONLY_CACHE_S:
            return known[1]
        try:
            engaged = read_record(prefix, SPOT_ONLY) is not None
        except ClientError as exc:
            # Fail open to what was known (the template's market when nothing was): a guard
            # that cannot be read must not stop every launch.
            engaged = known[1] if known else False
            logger.warning(
                "spot-only state unreadable, launching as last known",
                extra={"error_code": error_code(exc), "spot_only": engaged},
            )
        with self._lock:
            self._known[prefix] = (now, engaged)
        return engaged

    def clear(self) -> None:
        with self._lock:
            self._known.clear()


spot_only_cache = _SpotOnlyCache()


def launch_market(market: str, prefix: str, clock: Callable[[], float] = time.monotonic) -> str:
    """The market a launch uses: the template's, or spot alone while spot-only is engaged
    (`spot-then-on-demand` and `on-demand` templates launch spot; no on-demand fallback)."""
    if market == "spot":
        return market
    return "spot" if spot_only_cache.get(prefix, clock) else market


def describe(change: Change) -> dict[str, Any]:
    """A change as a log/JSON object."""
    return {"mode": change.mode, "engaged": change.engaged, "already": change.already,
            "actions": list(change.actions)}  # fmt: skip
