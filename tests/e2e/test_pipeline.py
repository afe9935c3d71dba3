"""The whole pipeline through the local stack: jobs complete, nothing is left, under every fault."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devstack.faults import INFRA_FAULTS
from devstack.stack import Options, Stack
from devstack.startup import StartupError
from tests.support.waits import PATIENCE_S

pytestmark = pytest.mark.e2e


def run(tmp_path: Path, **kwargs: object) -> tuple[Stack, dict[str, object]]:
    settings: dict[str, object] = {
        "job_seconds": 0.3,
        "redrive_every_s": 2.0,
        "housekeeper_every_s": 3.0,
        "visibility_timeout_s": 2,
        "max_receive_count": 4,
        "workdir": tmp_path,
        "timeout_s": PATIENCE_S,  # a hang guard: a run takes 10-30 s on an idle machine
    }
    options = Options(**{**settings, **kwargs})  # type: ignore[arg-type]
    stack = Stack(options, out=(tmp_path / "progress.txt").open("w"))
    try:
        stack.start()
        summary = stack.run_demo()
    finally:
        stack.stop()
    return stack, summary


def assert_clean(stack: Stack, summary: dict[str, object]) -> None:
    # Jobs refused at the webhook (sizing) are cancelled by their users, never run.
    assert summary["completed"] == summary["jobs"] - len(stack.refused_jobs), stack.progress.lines
    for key in ("instances_left", "jit_params_left", "runners_left", "queue_left", "dlq_left"):
        assert summary[key] == 0, (key, stack.progress.lines)
    limits = {t["name"]: t["max_runners"] for t in stack.world.tf_templates}
    for template, peak in stack.max_per_template.items():
        assert peak <= limits[template], (template, peak)
    assert stack.enforcer is not None, "IAM enforcement is on in every pipeline test"
    assert stack.iam_denials() == [], "a request the module's own policies deny"
    text = stack.logged_text() + stack.commands_text()
    for secret in stack.sim.issued_secrets:
        if secret != stack.sim.webhook_secret:
            assert secret not in text


def test_demo_over_several_templates_completes_with_nothing_left(tmp_path: Path) -> None:
    stack, summary = run(tmp_path, jobs=5, seed=11, sized_jobs=1, refused_sized_jobs=1)
    assert_clean(stack, summary)
    assert summary["instances_launched"] >= 5
    assert len({i["template"] for i in stack.seen_instances.values()}) == len(
        stack.world.tf_templates
    )
    # The sized template's job asked for cpu=4/ram=16: not its own m7i.large, an m7i.xlarge.
    [sized] = [i for i in stack.seen_instances.values() if i["template"] == "linux-sized"]
    assert (sized["sizing"], sized["type"]) == ("cpu=4/ram=16", "m7i.xlarge")
    # The job asking for cpu=64 was refused at the webhook, launched nothing, and was cancelled.
    [refused] = stack.refused_jobs
    assert refused in stack.refused_cancelled
    assert refused not in stack.launched_for.values()
    assert summary["cancelled"] == 1
    assert "job refused: sizing label outside the template's policy" in stack.logged_text()
    # Every runner's end has its estimated cost (prices: moto's spot history, the stack's
    # emulated Price List), under the module's IAM policies.
    text = stack.logged_text()
    assert text.count("runner ended: estimated cost") == summary["instances_launched"]
    assert "runner ended: cost unknown" not in text


EVIDENCE = {
    "ec2-capacity": lambda s: sum(v for k, v in s.ec2_faults.counters.items() if "capacity" in k),
    "ec2-throttle": lambda s: sum(v for k, v in s.ec2_faults.counters.items() if "throttled" in k),
    "github-5xx": lambda s: s.sim.counters["fault_5xx"],
    "github-rate-limit": lambda s: s.sim.counters["fault_rate_limited"],
    "ssm-offline": lambda s: s.agent.counters["agent_not_ready"],
    "drop-events": lambda s: s.bus.counters["dropped"],
    "duplicate-webhooks": lambda s: s.sim.counters["webhooks_duplicated"],
    "lost-webhooks": lambda s: s.sim.counters["redeliveries"],
    "spot-interrupt": lambda s: s.sim.counters["reruns"],
}


@pytest.mark.parametrize("fault", INFRA_FAULTS)
def test_each_fault_alone_still_completes_every_job(tmp_path: Path, fault: str) -> None:
    fraction = 1.0 if fault in ("lost-webhooks", "spot-interrupt", "ssm-offline") else 0.4
    stack, summary = run(tmp_path, jobs=3, seed=21, faults={fault: fraction})
    assert_clean(stack, summary)
    assert EVIDENCE[fault](stack) > 0, f"{fault} was never injected"


def test_all_faults_at_once_exercise_the_dlq_and_redrive(tmp_path: Path) -> None:
    faults = dict.fromkeys(INFRA_FAULTS, 0.2)
    # Every agent comes online 8 s late, so starts are retried (and may reach the DLQ); whatever
    # the thread timing, the first two job messages crash scale-up until SQS gives up on them.
    faults["ssm-offline"] = 1.0
    stack, summary = run(
        tmp_path,
        jobs=4,
        seed=31,
        faults=faults,
        max_receive_count=2,
        ssm_offline_s=8.0,
        poisoned_messages=2,
    )
    assert_clean(stack, summary)
    assert stack.event_source is not None
    assert stack.event_source.counters["poisoned_invocations"] >= 2
    assert stack.scheduler.counters["redrive:moved"] >= 1, "nothing came back from the DLQ"


def _until_denied(tmp_path: Path, what: str, **kwargs: object) -> Stack:
    """Start the stack, queue one job and wait until the IAM layer refuses `what` (a substring of
    `operation action resource`). Bounded by how long the job could take, not by a fixed time."""
    options = Options(job_seconds=0.3, workdir=tmp_path, jobs=1, seed=41, **kwargs)  # type: ignore[arg-type]
    stack = Stack(options, out=(tmp_path / "progress.txt").open("w"))
    try:
        stack.start()
        stack.queue_jobs()
        deadline_polls = 600  # x 0.2 s of waiting, reset while the stack still makes progress
        while deadline_polls and not any(what in d for d in stack.iam_denials()):
            deadline_polls -= 1
            time.sleep(0.2)
    finally:
        stack.stop()
    return stack


def test_launch_template_without_volume_tags_is_denied_as_aws_denies_it(tmp_path: Path) -> None:
    """The launch policy requires aws:RequestTag/jitrunners:prefix on volumes: a launch template
    that does not tag them (824236b's) gets UnauthorizedOperation and launches nothing."""
    stack = _until_denied(tmp_path, "ec2.CreateFleet", untagged_launch_resources=("volume",))
    denied = [d for d in stack.iam_denials() if d.startswith("ec2.CreateFleet")]
    assert any(":volume/" in d for d in denied), stack.iam_denials()
    assert "UnauthorizedOperation" in stack.logged_text()
    assert stack.seen_instances == {}


def test_a_policy_missing_a_needed_statement_fails_with_the_aws_error(tmp_path: Path) -> None:
    """Without TerminateOurInstances, scale-down cannot end a runner's instance."""
    stack = _until_denied(
        tmp_path,
        "ec2.TerminateInstances",
        iam_without={"scale-down": ("TerminateOurInstances",)},
    )
    assert any(d.startswith("ec2.TerminateInstances") for d in stack.iam_denials())
    assert "terminate:UnauthorizedOperation" in stack.logged_text()


@pytest.mark.parametrize(
    ("function", "statement"),
    [("scale-up", "ConsumeAndEnqueue"), ("scale-down", "ReadTeardownQueue")],
)
def test_each_event_source_polls_with_its_functions_role(
    tmp_path: Path, function: str, statement: str
) -> None:
    """Lambda's SQS event source mappings (the job queue's, the teardown queue's) read the queue
    with the function's execution role: without the statement that grants it, the mapping cannot
    even read the queue's attributes."""
    options = Options(workdir=tmp_path, jobs=1, iam_without={function: (statement,)})
    stack = Stack(options, out=(tmp_path / "progress.txt").open("w"))
    try:
        with pytest.raises(StartupError, match=r"AccessDenied.*sqs:GetQueueAttributes"):
            stack.start()
    finally:
        stack.stop()
    assert any(d.startswith("sqs.GetQueueAttributes") for d in stack.iam_denials())
