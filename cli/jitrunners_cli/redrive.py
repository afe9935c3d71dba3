"""`jitrunners redrive [--dry-run]`: the redrive Lambda's pass over the DLQ, run now from here.

It is the Lambdas' own code (jitrunners.lifecycle.recovery.redrive) with the deployment's settings
and GitHub credentials: a job GitHub still has queued goes back to the job queue, one it no longer
has is dropped with its reason, one redriven too often stays. `--dry-run` looks at every message,
says what would happen to it, and leaves the DLQ as it was (messages are made visible again).
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any, Final

from jitrunners_cli import render
from jitrunners_cli.deployment import Deployment, find, quiet_lambda_logs
from jitrunners_cli.errors import EXIT_NOT_FOUND, CliError

MAX_MESSAGES: Final = 1000  # a dry run holds what it has seen invisible while it looks further
HOLD_S: Final = 60
BUDGET_MS: Final = 15 * 60 * 1000  # as long as the redrive Lambda's own timeout allows, at most


def register(subparsers: argparse._SubParsersAction, parents: list) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "redrive",
        parents=parents,
        help="move DLQ messages back to the job queue now",
        description="Run the redrive Lambda's pass over the job DLQ from here: jobs GitHub "
        "still has queued go back to the job queue, the others are dropped with a reason.",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would happen; change nothing"
    )
    parser.set_defaults(func=run)


def _deps(deployment: Deployment) -> Any:
    from jitrunners.lifecycle.recovery.redrive import RedriveDeps
    from jitrunners.lifecycle.wiring import job_status, utc_now

    github = deployment.github()
    left = [BUDGET_MS]

    def remaining_ms() -> int:
        left[0] -= 1000  # one batch at a time, bounded however long the DLQ is
        return left[0]

    return RedriveDeps(
        job_status=lambda message: job_status(github, message),
        clock=utc_now,
        remaining_ms=remaining_ms,
    )


def dry_run(deployment: Deployment) -> dict[str, Any]:
    from jitrunners.aws import inbox
    from jitrunners.lifecycle.recovery.redrive import decide
    from jitrunners.models import JobMessage, MessageError

    assert deployment.dlq_url is not None
    settings = deployment.settings
    deps = _deps(deployment)
    seen: list[dict[str, Any]] = []
    held: list[str] = []
    try:
        while len(seen) < MAX_MESSAGES:
            batch = inbox.receive(deployment.dlq_url, visibility_s=HOLD_S)
            if not batch:
                break
            for received in batch:
                held.append(received.receipt_handle)
                try:
                    message = JobMessage.from_json(received.body)
                except MessageError as exc:
                    seen.append({"message_id": received.message_id, "verdict": "hold:malformed",
                                 "detail": str(exc)})  # fmt: skip
                    continue
                seen.append(
                    {
                        "message_id": received.message_id,
                        "kind": message.kind,
                        "job_id": message.job_id,
                        "repo": message.repo,
                        "template": message.template,
                        "redrives": message.redrives,
                        "verdict": decide(message, settings, deps),
                    }
                )
    finally:
        for receipt in held:
            inbox.release(deployment.dlq_url, receipt)
    return {
        "dry_run": True,
        "outcomes": dict(Counter(item["verdict"] for item in seen)),
        "messages": seen,
    }


def redrive_now(deployment: Deployment) -> dict[str, Any]:
    from jitrunners.lifecycle.recovery.redrive import redrive

    assert deployment.dlq_url is not None
    report = redrive(deployment.dlq_url, deployment.job_queue_url, deployment.settings,
                     _deps(deployment))  # fmt: skip
    return {"dry_run": False, "outcomes": dict(report.outcomes), "moved": report.moved}


def run(args: argparse.Namespace) -> int:
    quiet_lambda_logs()
    deployment = find(args.prefix)
    if deployment.dlq_url is None:
        raise CliError(f"no queue {deployment.names.dlq}", EXIT_NOT_FOUND)
    result = dry_run(deployment) if args.dry_run else redrive_now(deployment)
    if args.json:
        render.emit_json(result)
        return 0
    outcomes = result["outcomes"]
    if not outcomes:
        print(f"{deployment.names.dlq}: empty, nothing to redrive")
        return 0
    if args.dry_run:
        rows: list[list[Any]] = [["job", "kind", "template", "redrives", "would"]]
        for item in result["messages"]:
            rows.append([item.get("job_id", "?"), item.get("kind", "?"),
                         item.get("template", "?"), item.get("redrives", "?"),
                         _words(item["verdict"])])  # fmt: skip
        print("\n".join(render.table(rows, right=(3,))))
        print(f"dry run: {len(result['messages'])} message(s) looked at, none changed")
    else:
        for verdict, count in sorted(outcomes.items()):
            print(f"{count:>5}  {_words(verdict)}")
    return 0


def _words(verdict: str) -> str:
    action, _, why = verdict.partition(":")
    word = {"move": "move to the job queue", "hold": "stay in the DLQ", "drop": "drop"}[action]
    return f"{word} ({why.replace('_', ' ')})" if why else word
