"""`jitrunners kill-switch [status|on|off]`: stop taking and starting jobs without losing any.

The switch (DESIGN 5b) is reserved concurrency 0 on the webhook and scale-up functions and the job
queue's event source mapping disabled: queued jobs wait in the queue, GitHub's deliveries fail
meanwhile (the housekeeper has GitHub redeliver them once it is off, App mode). `terraform apply`
owns the setting: `kill_switch = true` holds it whatever this command does. What this command
engages is recorded under /<prefix>/state/guard/ and Terraform's plan reads that record, so an
apply keeps it on until `jitrunners kill-switch off` lifts it (the same code the budget guard runs:
jitrunners.guardrail). Every change is recorded with who and why (`aws ssm get-parameter-history
--name /<prefix>/state/guard/history`) and counted (KillSwitchEngaged / KillSwitchLifted).
"""

from __future__ import annotations

import argparse
from typing import Any

from jitrunners import guardrail
from jitrunners_cli import control
from jitrunners_cli.errors import CliError


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    control.register_mode(
        subparsers,
        parents,
        "kill-switch",
        "stop (on) or resume (off) taking and starting jobs; queued jobs wait",
        __doc__,
        handler,
    )


def handler(args: argparse.Namespace) -> int:
    target = control.target(args)
    with control.functions_of(target.prefix):
        if args.state == "status":
            return _status(args, guardrail.kill_switch_state(target.prefix))
        reason = args.reason or f"jitrunners kill-switch {args.state}"
        try:
            if args.state == "on":
                change = guardrail.engage_kill_switch(
                    target.prefix, by=target.caller, source="cli", reason=reason, now=control.now()
                )
            else:
                change = guardrail.lift_kill_switch(
                    target.prefix, by=target.caller, source="cli", reason=reason, now=control.now()
                )
        except guardrail.GuardError as exc:
            raise CliError(str(exc)) from None
        state = guardrail.kill_switch_state(target.prefix)
    metric = "KillSwitchEngaged" if change.engaged else "KillSwitchLifted"
    warning = None if change.already else control.meter(target, metric, source="cli")
    if warning:
        control.note(warning)
    _changed(args, target, change, state, reason)
    return 0


def _changed(
    args: argparse.Namespace, target: control.Target, change: Any, state: Any, reason: str
) -> None:
    verb = "ON" if change.engaged else "OFF"
    already = f" (it was already {verb.lower()}: re-applied)" if change.already else ""
    lines = [f"kill switch {verb}{already}, by {target.caller}: {reason}"]
    lines += [f"  {action}" for action in change.actions]
    record = f"/{target.prefix}/state/guard/kill-switch"
    if change.engaged:
        lines += [
            "No job is taken or started; queued jobs wait in the job queue (4 days). GitHub's",
            "deliveries fail meanwhile; the housekeeper brings their jobs back (redelivery,",
            'reconciliation: README "Kill switch and spot-only").',
            f"terraform apply keeps it on (its plan reads {record});",
            f"lift it with `jitrunners kill-switch off --prefix {target.prefix}`.",
        ]
    else:
        lines += [
            "Jobs are taken and started again; queued jobs run now.",
            "Terraform's setting (kill_switch = false) holds from here:",
            "terraform apply keeps it off.",
        ]
    control.output(args, {**_summary(state), "changed": change.actions, "reason": reason}, lines)


def _summary(state: Any) -> dict[str, Any]:
    record = state.record
    setting = state.setting
    return {
        "stopped": state.stopped,
        "partial": state.partial,
        "held_by": state.held_by,
        "record": None
        if record is None
        else {
            "since": record.since,
            "by": record.by,
            "source": record.source,
            "reason": record.reason,
        },
        "terraform": None
        if setting is None
        else {"kill_switch": setting.kill_switch, "reserved_concurrency": setting.reserved},
        "reserved_concurrency": state.concurrency,
        "event_source_mappings": [
            {"uuid": m.uuid, "state": m.state, "source": m.source_arn} for m in state.mappings
        ],
    }


def _status(args: argparse.Namespace, state: Any) -> int:
    summary = _summary(state)
    if state.partial:
        headline = "PARTIAL (some of the switch is on: re-run `on` or `off` to converge)"
    else:
        headline = "ON" if state.stopped else "OFF"
    lines = [f"kill switch: {headline}"]
    if state.record is not None:
        r = state.record
        lines.append(f"  engaged at runtime since {r.since} by {r.by} ({r.source}): {r.reason}")
    if state.setting is not None:
        reserved = ", ".join(
            f"{k} {'unreserved' if v is None else v}" for k, v in state.setting.reserved.items()
        )
        lines.append(
            f"  terraform: kill_switch = {str(state.setting.kill_switch).lower()}"
            f" (off: reserved concurrency {reserved})"
        )
    else:
        lines.append("  terraform: setting unreadable (/<prefix>/config/kill-switch)")
    for name, value in state.concurrency.items():
        lines.append(f"  {name}: reserved concurrency {'unreserved' if value is None else value}")
    for mapping in state.mappings:
        lines.append(f"  event source mapping {mapping.uuid}: {mapping.state}")
    if not state.mappings:
        lines.append("  no event source mapping invokes scale-up")
    control.output(args, summary, lines)
    return 0
