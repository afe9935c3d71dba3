"""`jitrunners spot-only [status|on|off]`: launch spot capacity only (no on-demand, no fallback).

What the budget guard engages with `budget_action = "spot-only"`, and how an operator lifts it.
While on, scale-up launches every template on spot (a `spot-then-on-demand` or `on-demand`
template too); a launch spot cannot place waits and is retried, as a spot-only template's would
be. Warm scale-up containers notice within a minute. Not a Terraform setting: `terraform apply`
neither sets nor lifts it. Changes are recorded with who and why (/<prefix>/state/guard/history)
and counted (SpotOnlyEngaged / SpotOnlyLifted).
"""

from __future__ import annotations

import argparse

from jitrunners import guardrail
from jitrunners_cli import control


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    control.register_mode(
        subparsers,
        parents,
        "spot-only",
        "launch spot capacity only (on) or each template's market again (off)",
        __doc__,
        handler,
    )


def handler(args: argparse.Namespace) -> int:
    target = control.target(args)
    with control.functions_of(target.prefix):
        if args.state == "status":
            record = guardrail.read_record(target.prefix, guardrail.SPOT_ONLY)
            data = {"spot_only": record is not None, "record": None}
            lines = [f"spot-only: {'ON' if record else 'OFF'}"]
            if record is not None:
                data["record"] = {"since": record.since, "by": record.by,
                                  "source": record.source, "reason": record.reason}  # fmt: skip
                lines.append(
                    f"  since {record.since} by {record.by} ({record.source}): {record.reason}"
                )
            control.output(args, data, lines)
            return 0
        reason = args.reason or f"jitrunners spot-only {args.state}"
        change = (guardrail.engage_spot_only if args.state == "on" else guardrail.lift_spot_only)(
            target.prefix, by=target.caller, source="cli", reason=reason, now=control.now()
        )
    if not change.already:
        warning = control.meter(
            target, "SpotOnlyEngaged" if change.engaged else "SpotOnlyLifted", source="cli"
        )
        if warning:
            control.note(warning)
    verb = "ON" if change.engaged else "OFF"
    already = f" (it was already {verb.lower()})" if change.already else ""
    lines = [f"spot-only {verb}{already}, by {target.caller}: {reason}"]
    lines += [f"  {action}" for action in change.actions]
    lines.append("Warm scale-up containers follow within a minute.")
    data = {"spot_only": change.engaged, "already": change.already, "reason": reason}
    control.output(args, data, lines)
    return 0
