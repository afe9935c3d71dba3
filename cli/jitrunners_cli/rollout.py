"""`jitrunners rollout [FUNCTION ...]`: canary new Lambda code through each function's `live` alias.

Every trigger invokes the alias `live` (terraform/functions.tf). `terraform apply` of a new zip
publishes a new version and leaves the alias where it is; this command publishes $LATEST (a no-op
when Terraform already did), then shifts the alias's weight to the new version in steps (10 %, 50 %,
100 % by default). Between steps it waits and reads the new version's own health: Lambda's
`Errors` and `Throttles` of that version (ExecutedVersion) and our failure metrics of that version
(jitrunners.canary). A breach of any function rolls every function of the rollout back to its
previous version at once and exits 5 with the reason; success leaves 100 % on the new versions.

The rollout's state is the alias itself (its weights, and its description): an interrupted run
(Ctrl-C, a lost terminal) leaves the weights where they were, and running the command again
picks up from there (the interrupted step is watched again before going further). `--abort`
sends everything back to the version each alias had before. Terraform ignores the alias's version,
weights and description after creating it, so an apply never fights a rollout.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from jitrunners.aws import functions
from jitrunners.aws.clients import client, error_code
from jitrunners.canary import (
    ALIAS,
    FAILURE_METRICS,
    LAMBDA_FAILURES,
    LAMBDA_NAMESPACE,
    lambda_dimensions,
    own_dimensions,
)
from jitrunners_cli import control
from jitrunners_cli.errors import CliError

DEFAULT_STEPS = (10, 50, 100)
DEFAULT_INTERVAL_S = 300
# Beside errors.py's codes (1 failure, 2 usage, 3 no such deployment, 4 no access).
EXIT_ROLLED_BACK = 5
PERIOD_S = 60
# Function keys in the order they are rolled out and shown (terraform/documents.tf local.functions).
FUNCTION_KEYS = ("webhook", "scale-up", "scale-down", "redrive", "housekeeper", "budget-guard")
# Tests replace these: how the rollout waits, and what time it is (CloudWatch's clock).
sleep: Callable[[float], None] = time.sleep


def _now() -> datetime:
    return datetime.now(UTC)


now: Callable[[], datetime] = _now


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = subparsers.add_parser(
        "rollout",
        parents=parents,
        help="canary the published code of the Lambdas through their `live` aliases",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "functions",
        nargs="*",
        metavar="FUNCTION",
        help=f"function keys ({', '.join(FUNCTION_KEYS)}); default: all",
    )
    parser.add_argument(
        "--steps",
        type=_steps,
        default=DEFAULT_STEPS,
        help="percentages of traffic on the new version, ending at 100 (default 10,50,100)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help="seconds to watch each step before the next (default 300; CloudWatch's metrics"
        " arrive a minute or more late, keep this at several minutes in AWS)",
    )
    parser.add_argument(
        "--max-failures",
        type=int,
        default=0,
        help="failures of a new version tolerated per watched metric, over the rollout (default 0)",
    )
    parser.add_argument(
        "--abort",
        action="store_true",
        help="send every alias back to its previous version (an interrupted rollout)",
    )
    parser.set_defaults(func=handler)


def _steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated integers") from None
    if not steps or steps[-1] != 100 or list(steps) != sorted(set(steps)) or steps[0] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: increasing percentages ending at 100")
    return steps


@dataclass
class Canary:
    """One function's rollout: from the alias's version to the newest published one."""

    key: str
    function: str
    old: str
    new: str
    weight: float = 0.0  # share of invocations on `new` so far
    revision: str = ""
    result: str = ""  # up-to-date, promoted, rolled-back, aborted
    health: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"function": self.function, "from": self.old, "to": self.new,
                "weight": self.weight, "result": self.result, "health": self.health}  # fmt: skip


class RolledBack(Exception):
    """A new version breached its health: every alias of the rollout is back on its old version."""


def handler(args: argparse.Namespace) -> int:
    keys = tuple(args.functions) or FUNCTION_KEYS
    unknown = [k for k in keys if k not in FUNCTION_KEYS]
    if unknown:
        raise CliError(f"unknown function {', '.join(unknown)}: one of {', '.join(FUNCTION_KEYS)}")
    target = control.target(args)
    say = control.note if args.json else print
    rollout = Rollout(
        target.prefix, keys, steps=args.steps, interval_s=args.interval,
        max_failures=args.max_failures, say=say,
    )  # fmt: skip
    with control.functions_of(target.prefix):
        try:
            canaries = rollout.abort() if args.abort else rollout.run()
        except RolledBack as exc:
            if args.json:
                control.output(args, {"result": "rolled-back", "reason": str(exc),
                                      "functions": rollout.summary()}, [])  # fmt: skip
            raise CliError(f"rolled back: {exc}", exit_code=EXIT_ROLLED_BACK) from None
    control.output(args, {"result": "ok", "functions": [c.as_dict() for c in canaries]}, [])
    return 0


class Rollout:
    """The rollout of some functions of one deployment (AWS through jitrunners.aws.clients)."""

    def __init__(
        self,
        prefix: str,
        keys: Sequence[str],
        *,
        steps: Sequence[int] = DEFAULT_STEPS,
        interval_s: float = DEFAULT_INTERVAL_S,
        max_failures: int = 0,
        say: Callable[[str], None] = print,
    ) -> None:
        self.prefix = prefix
        self.keys = tuple(keys)
        self.steps = tuple(steps)
        self.interval_s = interval_s
        self.max_failures = max_failures
        self.say = say
        self.canaries: list[Canary] = []
        # Health is read from the first step on: late metrics of an earlier step still count.
        self.started: datetime | None = None

    # ------------------------------------------------------------------ plan
    def _alias(self, function: str) -> dict[str, Any]:
        try:
            return client("lambda").get_alias(FunctionName=function, Name=ALIAS)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise functions.FunctionNotFound(
                    f"Lambda function {function} or its alias {ALIAS} not found"
                ) from None
            raise

    def plan(self, key: str) -> Canary:
        """Publish $LATEST (Lambda returns the last version when nothing changed) and compare
        it with what the alias routes to."""
        function = f"{self.prefix}-{key}"
        alias = self._alias(function)
        old = str(alias["FunctionVersion"])
        client("lambda").get_waiter("function_updated").wait(
            FunctionName=function, WaiterConfig={"Delay": 2, "MaxAttempts": 60}
        )
        new = str(client("lambda").publish_version(FunctionName=function)["Version"])
        canary = Canary(key, function, old, new, revision=str(alias.get("RevisionId", "")))
        weights = _weights(alias)
        if new == old:
            canary.result = "up-to-date"
            if weights:
                self.say(f"  {key}: an earlier rollout's weights {weights} dropped")
                self._route(canary, new, {}, f"{new} (weights of an older rollout dropped)")
        elif new in weights:
            canary.weight = weights[new]  # an interrupted rollout of this version: resume
        elif weights:
            self.say(f"  {key}: rollout of version(s) {', '.join(weights)} superseded by {new}")
        return canary

    # ------------------------------------------------------------------ run
    def run(self) -> list[Canary]:
        self.canaries = [self.plan(key) for key in self.keys]
        active = [c for c in self.canaries if not c.result]
        steps = " ".join(f"{s}%" for s in self.steps)
        self.say(
            f"rollout of {self.prefix}: steps {steps}, watching {self.interval_s:g} s after each,"
            f" at most {self.max_failures} failure(s) of a new version per metric"
        )
        for c in self.canaries:
            if c.result:
                self.say(f"  {c.key:<13} up to date (version {c.new})")
            else:
                resumed = f", resuming at {c.weight:.0%}" if c.weight else ""
                self.say(f"  {c.key:<13} version {c.old} -> {c.new}{resumed}")
        if not active:
            self.say("nothing to roll out")
            return self.canaries
        self._refuse_stopped(active)
        try:
            for pct in self._plan_steps(active):
                self._step(active, pct)
        except KeyboardInterrupt:
            where = ", ".join(f"{c.key} {c.weight:.0%} on {c.new}" for c in active)
            self.say(
                f"interrupted ({where}): run `jitrunners rollout` again to continue from there,"
                " or `jitrunners rollout --abort` to go back"
            )
            raise
        for c in active:
            c.result = "promoted"
        self.say("promoted: " + ", ".join(f"{c.key} {c.new}" for c in active))
        return self.canaries

    def _plan_steps(self, active: Sequence[Canary]) -> list[int]:
        """The configured steps from the least advanced function on; an interrupted step is
        watched again (its percentage joins the list)."""
        resumed = {round(c.weight * 100) for c in active if c.weight}
        start = min(round(c.weight * 100) for c in active)
        return sorted(s for s in set(self.steps) | resumed if s >= start and s > 0)

    def _refuse_stopped(self, active: Sequence[Canary]) -> None:
        stopped = [c.function for c in active if functions.reserved_concurrency(c.function) == 0]
        if stopped:
            raise CliError(
                f"{', '.join(stopped)}: reserved concurrency 0 (the kill switch?): a canary of a"
                " function that runs nothing proves nothing; lift it first or leave it out"
            )

    def _step(self, active: Sequence[Canary], pct: int) -> None:
        self.started = self.started or now()
        for c in active:
            if pct == 100:
                self._route(c, c.new, {}, f"{c.new} (rolled out from {c.old})")
                c.weight = 1.0
            elif pct / 100 > c.weight:
                self._route(
                    c, c.old, {c.new: pct / 100}, f"rollout {c.old} -> {c.new}: {pct}% on {c.new}"
                )
                c.weight = pct / 100
        if pct == 100:
            return
        if len({c.weight for c in active}) == 1:
            moved = f"{len(active)} alias(es) send {active[0].weight:.0%} to the new version"
        else:
            moved = ", ".join(f"{c.key} {c.weight:.0%} on {c.new}" for c in active)
        self.say(f"[{pct:>3}%] {moved}; watching for {self.interval_s:g} s")
        sleep(self.interval_s)
        breaches = self._check(active, self.started, pct)
        if breaches:
            self._roll_back(active, breaches)
            raise RolledBack("; ".join(breaches))

    def _route(self, c: Canary, version: str, weights: dict[str, float], note: str) -> None:
        request: dict[str, Any] = {
            "FunctionName": c.function,
            "Name": ALIAS,
            "FunctionVersion": version,
            "RoutingConfig": {"AdditionalVersionWeights": weights},
            "Description": f"jitrunners rollout: {note}"[:256],
        }
        if c.revision:
            request["RevisionId"] = c.revision  # refused if someone else moved the alias
        answer = client("lambda").update_alias(**request)
        c.revision = str(answer.get("RevisionId", ""))

    # ------------------------------------------------------------------ health
    def _check(self, active: Sequence[Canary], started: datetime, pct: int) -> list[str]:
        """Read each new version's failures since the rollout's first step; the breaches."""
        sums = self._sums(active, started)
        breaches: list[str] = []
        for i, c in enumerate(active):
            counts = {m: sums.get(f"m{i}_{j}", 0.0) for j, m in enumerate(_watched(c.key))}
            watched = [*LAMBDA_FAILURES, *FAILURE_METRICS[c.key]]
            over = {m: n for m, n in counts.items() if m in watched and n > self.max_failures}
            c.health.append({"step": pct, **counts})
            shown = ", ".join(f"{n:g} {m}" for m, n in counts.items())
            verdict = "BREACH" if over else "healthy"
            if not over and not counts.get("Invocations"):
                # CloudWatch's lag, or no traffic: all that is known is that nothing failed.
                verdict = "healthy (no invocation of it seen yet)"
            self.say(f"[{pct:>3}%] {c.key} version {c.new}: {shown} -> {verdict}")
            breaches += [
                f"{c.key} version {c.new}: {m} {n:g} > {self.max_failures} at {pct}%"
                for m, n in over.items()
            ]
        return breaches

    def _sums(self, active: Sequence[Canary], started: datetime) -> dict[str, float]:
        queries: list[dict[str, Any]] = []
        for i, c in enumerate(active):
            for j, metric in enumerate(_watched(c.key)):
                lambda_metric = metric in LAMBDA_METRICS
                dims = (
                    lambda_dimensions(c.function, c.new)
                    if lambda_metric
                    else own_dimensions(self.prefix, c.function, c.new)
                )
                queries.append(
                    {
                        "Id": f"m{i}_{j}",
                        "MetricStat": {
                            "Metric": {
                                "Namespace": LAMBDA_NAMESPACE if lambda_metric else self.prefix,
                                "MetricName": metric,
                                "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
                            },
                            "Period": PERIOD_S,
                            "Stat": "Sum",
                        },
                    }
                )
        # Whole minutes around the step: CloudWatch aggregates per minute.
        start = started.replace(second=0, microsecond=0)
        end = now().replace(second=0, microsecond=0) + timedelta(seconds=PERIOD_S)
        sums: dict[str, float] = {}
        token: str | None = None
        while True:
            request: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start,
                                       "EndTime": end}  # fmt: skip
            if token:
                request["NextToken"] = token
            answer = client("cloudwatch").get_metric_data(**request)
            for result in answer.get("MetricDataResults", []):
                sums[result["Id"]] = sums.get(result["Id"], 0.0) + sum(result.get("Values", []))
            token = answer.get("NextToken")
            if not token:
                return sums

    # ------------------------------------------------------------------ back
    def _roll_back(self, active: Sequence[Canary], breaches: Sequence[str]) -> None:
        for c in active:
            self._route(c, c.old, {}, f"{c.old} (version {c.new} rolled back: {breaches[0]})")
            c.weight = 0.0
            c.result = "rolled-back"
        self.say("rolled back: " + ", ".join(f"{c.key} -> {c.old}" for c in active))

    def abort(self) -> list[Canary]:
        """Every alias of the chosen functions back on its primary version, weights dropped."""
        self.canaries = []
        for key in self.keys:
            function = f"{self.prefix}-{key}"
            alias = self._alias(function)
            old = str(alias["FunctionVersion"])
            weights = _weights(alias)
            canary = Canary(key, function, old, next(iter(weights), old),
                            revision=str(alias.get("RevisionId", "")))  # fmt: skip
            if weights:
                self._route(canary, old, {}, f"{old} (rollout of {canary.new} aborted)")
                canary.result = "aborted"
                self.say(f"  {key}: back to version {old} (version {canary.new} dropped)")
            else:
                canary.result = "up-to-date"
                self.say(f"  {key}: no rollout in progress (version {old})")
            self.canaries.append(canary)
        return self.canaries

    def summary(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in self.canaries]


# Lambda's failures, and its invocations of the version (shown as evidence, never judged).
LAMBDA_METRICS = ("Errors", "Throttles", "Invocations")


def _watched(key: str) -> tuple[str, ...]:
    """Lambda's metrics of the version, then our failure metrics of that function."""
    return (*LAMBDA_METRICS, *FAILURE_METRICS[key])


def _weights(alias: dict[str, Any]) -> dict[str, float]:
    routing = alias.get("RoutingConfig") or {}
    return {str(k): float(v) for k, v in (routing.get("AdditionalVersionWeights") or {}).items()}
