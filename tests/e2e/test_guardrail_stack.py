"""The budget guard in the local stack: the notification AWS Budgets publishes engages the kill
switch, the stack's API Gateway and SQS event source obey it as AWS does (deliveries refused, the
job queue not polled: the housekeeper's reconciliation launches for the refused jobs wait in it),
and `jitrunners kill-switch off`, run as an operator runs it against the stack's endpoint, lets
every job run, with nothing left afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.stack import Options, Stack
from tests.support.lambdas import budget_message
from tests.support.waits import PATIENCE_S

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def wait(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.2)


def jitrunners(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, pointed at the stack's moto as AWS_ENDPOINT_URL points it."""
    env = {
        **os.environ,
        **stack.cli_env(),  # what `eval` of `make run ARGS=--serve`'s export lines sets
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("lambdas", "cli")),
    }
    env.pop("AWS_SESSION_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "jitrunners_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
        check=False,
    )


def test_a_budget_stop_holds_jobs_until_an_operator_lifts_it(tmp_path: Path) -> None:
    options = Options(
        jobs=2,
        templates=["linux-x64"],
        job_seconds=0.3,
        redrive_every_s=2.0,
        housekeeper_every_s=3.0,
        visibility_timeout_s=2,
        max_receive_count=4,
        workdir=tmp_path,
        timeout_s=PATIENCE_S,
        # Repositories the reconciliation reads although no runner of ours ran for them yet:
        # it finds the jobs whose deliveries the switch refused (README "Reconciliation").
        cloud=True,  # the functions and the mapping in moto, which the switch changes
        lambda_env={
            "BUDGET_ACTION": "kill-switch",
            "ALLOWED_REPOS": "acme/widgets,acme/gadgets",
            "RECONCILE_GRACE_S": "2",  # the stack's 10 s, shortened: nothing else races it here
        },
    )
    stack = Stack(options, out=(tmp_path / "progress.txt").open("w"))
    try:
        stack.start()
        subject, message = budget_message(amount="$1,234.56", threshold="> $1,000.00")
        outcome = stack.publish_budget_alert(subject, message)
        assert outcome["outcomes"][0]["action"] == "kill-switch"

        stack.queue_jobs()
        assert stack.apigw is not None
        assert stack.event_source is not None
        queue = stack.world.job_queue_url
        # GitHub's deliveries are refused; the reconciliation's launches for the two jobs wait in
        # the job queue, which nothing polls.
        wait(lambda: stack.world.queue_depth(queue) >= 2 and stack.apigw.statuses["throttled"] >= 2)
        assert stack.counters["instances_launched"] == 0
        assert stack.event_source.counters["records"] == 0
        assert stack.event_source.counters["paused_polls"] > 0
        assert stack.world.queue_depth(stack.world.dlq_url) == 0
        assert stack.finished() == 0

        lifted = jitrunners(stack, "kill-switch", "off", "--reason", "budget raised")
        assert lifted.returncode == 0, lifted.stderr
        assert "kill switch OFF" in lifted.stdout

        wait(lambda: stack.finished() == 2)
        wait(stack.settled)
        summary = stack.summary()
        assert summary["completed"] == 2
        for key in ("instances_left", "jit_params_left", "runners_left", "queue_left", "dlq_left"):
            assert summary[key] == 0, key
        assert stack.iam_denials() == []
    finally:
        stack.stop()
