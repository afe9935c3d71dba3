"""The webhook Lambda end to end against moto SQS: what is enqueued and what GitHub is answered."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from jitrunners.aws import deliveries
from jitrunners.handlers import webhook
from tests.conftest import _reset_process_caches, drain
from tests.support.webhooks import SECRET, proxy_event, signed_job_event, workflow_job_payload

# Secrets under 16 bytes count as not configured (a placeholder, a guessable value).
SSM_SECRET = "from-ssm-0123456789"


def _call(event: dict[str, Any], ctx: Any) -> tuple[int, dict[str, Any]]:
    response = webhook.handler(event, ctx)
    return response["statusCode"], json.loads(response["body"])


def _reconfigure(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _reset_process_caches()


@pytest.mark.parametrize("version", ["1.0", "2.0"])
@pytest.mark.parametrize("base64_body", [False, True])
def test_accepted_job_enqueues_one_launch_message(
    env: dict[str, str], lambda_context: Any, version: str, base64_body: bool
) -> None:
    body = json.dumps(workflow_job_payload(job_id=31, labels=["self-hosted", "ARM64"]))
    event = proxy_event(body, delivery="dlv-31", version=version, base64_body=base64_body)

    status, answer = _call(event, lambda_context)

    assert status == 202
    assert answer == {"accepted": True, "job_id": 31, "template": "linux-arm64"}
    [message] = drain(env["JOB_QUEUE_URL"])
    sent = json.loads(message["Body"])
    assert sent["kind"] == "launch"
    assert sent["v"] == 1
    assert sent["job_id"] == 31
    assert sent["template"] == "linux-arm64"
    assert sent["delivery_id"] == "dlv-31"
    assert sent["labels"] == ["self-hosted", "ARM64"]
    assert message["MessageAttributes"]["delivery_id"]["StringValue"] == "dlv-31"


def test_ping_is_answered(env: dict[str, str], lambda_context: Any) -> None:
    status, answer = _call(
        proxy_event(b'{"zen":"Keep it logically awesome."}', event="ping"), lambda_context
    )
    assert (status, answer) == (200, {"msg": "pong"})
    assert drain(env["JOB_QUEUE_URL"]) == []


@pytest.mark.parametrize(
    ("event_kwargs", "status", "reason"),
    [
        ({"event": "push"}, 202, "event_not_handled"),
        ({"action": "in_progress"}, 202, "action_not_handled"),  # not on a runner of ours
        ({"action": "requested"}, 202, "action_not_handled"),
        ({"labels": ["ubuntu-latest"]}, 202, "no_template"),
        ({"private": False}, 202, "public_repo"),
    ],
)
def test_ignored_deliveries_enqueue_nothing(
    env: dict[str, str], lambda_context: Any, event_kwargs: dict[str, Any], status: int, reason: str
) -> None:
    event_name = event_kwargs.pop("event", "workflow_job")
    body = json.dumps(workflow_job_payload(**event_kwargs))
    got_status, answer = _call(proxy_event(body, event=event_name), lambda_context)
    assert (got_status, answer["ignored"]) == (status, reason)
    assert drain(env["JOB_QUEUE_URL"]) == []


RECLAIMED = "i-0123456789abcdef0"


def test_failed_job_on_one_of_our_runners_queues_a_rerun_check(
    env: dict[str, str], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reconfigure(monkeypatch, RERUN_INTERRUPTED_JOBS="true")
    payload = workflow_job_payload(
        action="completed", job_id=51, conclusion="failure", runner_name=RECLAIMED
    )

    status, answer = _call(proxy_event(json.dumps(payload), delivery="dlv-51"), lambda_context)

    assert (status, answer) == (202, {"rerun_check": True, "job_id": 51})
    [message] = drain(env["JOB_QUEUE_URL"])
    sent = json.loads(message["Body"])
    assert (sent["kind"], sent["job_id"], sent["instance_id"]) == ("rerun", 51, RECLAIMED)


@pytest.mark.parametrize(
    ("rerun", "conclusion", "runner", "kind"),
    [
        ("false", "failure", RECLAIMED, "taken"),  # re-runs are off: only the books
        ("true", "success", RECLAIMED, "taken"),
        ("true", "cancelled", RECLAIMED, "taken"),
        ("true", "failure", "GitHub Actions 7", "release"),  # not one of our runners
        ("true", "cancelled", None, "release"),  # cancelled before any runner took it
    ],
)
def test_other_completed_jobs_are_recorded_not_rerun(
    env: dict[str, str],
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    rerun: str,
    conclusion: str,
    runner: str | None,
    kind: str,
) -> None:
    """DESIGN §6b: a job that ran on one of our runners is `taken` (which runner ran it); one
    that ended without ours is a `release` (runners launched for it and still idle stop)."""
    _reconfigure(monkeypatch, RERUN_INTERRUPTED_JOBS=rerun)
    payload = workflow_job_payload(action="completed", conclusion=conclusion, runner_name=runner)
    status, answer = _call(proxy_event(json.dumps(payload)), lambda_context)
    assert (status, answer) == (202, {"recorded": kind, "job_id": payload["workflow_job"]["id"]})
    [sent] = [json.loads(m["Body"]) for m in drain(env["JOB_QUEUE_URL"])]
    assert (sent["kind"], sent.get("instance_id")) == (kind, runner if kind == "taken" else None)


def test_in_progress_on_our_runner_is_taken_and_waiting_is_a_release(
    env: dict[str, str], lambda_context: Any
) -> None:
    running = workflow_job_payload(action="in_progress", runner_name=RECLAIMED)
    waiting = workflow_job_payload(action="waiting")
    assert _call(proxy_event(json.dumps(running)), lambda_context)[1]["recorded"] == "taken"
    assert _call(proxy_event(json.dumps(waiting)), lambda_context)[1]["recorded"] == "release"
    sent = [json.loads(m["Body"]) for m in drain(env["JOB_QUEUE_URL"])]
    assert [(m["kind"], m.get("instance_id")) for m in sent] == [
        ("taken", RECLAIMED),
        ("release", None),
    ]


def test_public_repo_allowed_when_configured(
    env: dict[str, str], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reconfigure(monkeypatch, ALLOW_PUBLIC_REPOS="true")
    status, _ = _call(signed_job_event(private=False), lambda_context)
    assert status == 202
    assert len(drain(env["JOB_QUEUE_URL"])) == 1


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        ({"ALLOWED_OWNERS": "someone-else"}, "owner_not_allowed"),
        ({"ALLOWED_REPOS": "acme/other"}, "repo_not_allowed"),
    ],
)
def test_allowlist_refuses_with_reason_and_warning(
    env: dict[str, str],
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    log_lines: Any,
    setting: dict[str, str],
    reason: str,
) -> None:
    _reconfigure(monkeypatch, **setting)
    status, answer = _call(signed_job_event(), lambda_context)
    assert (status, answer["ignored"]) == (202, reason)
    assert drain(env["JOB_QUEUE_URL"]) == []
    warnings = [line for line in log_lines() if line["level"] == "WARNING"]
    assert any(w.get("reason") == reason for w in warnings)


@pytest.mark.parametrize(
    ("event", "status", "error"),
    [
        (proxy_event(b"{}", signature=None, secret=None), 401, "bad_signature"),
        (proxy_event(b"{}", secret="wrong"), 401, "bad_signature"),
        (proxy_event(b"{}", signature="sha256=deadbeef"), 401, "bad_signature"),
        (proxy_event(b"{not json"), 400, "malformed_json"),
        (proxy_event(b"[]"), 400, "invalid_payload"),
        (proxy_event(json.dumps({"action": "queued"})), 400, "invalid_payload"),
        (proxy_event(b"{}", event=None), 400, "missing_event_header"),
        ({"body": "e30=", "isBase64Encoded": True, "headers": None}, 401, "bad_signature"),
        ({"body": "%%%", "isBase64Encoded": True, "headers": {}}, 400, "malformed_event"),
        ({"body": 12, "headers": {}}, 400, "malformed_event"),
        ({"headers": "x"}, 400, "malformed_event"),
    ],
)
def test_rejections_return_4xx_and_enqueue_nothing(
    env: dict[str, str], lambda_context: Any, event: dict[str, Any], status: int, error: str
) -> None:
    got_status, answer = _call(event, lambda_context)
    assert (got_status, answer["error"]) == (status, error)
    assert drain(env["JOB_QUEUE_URL"]) == []


def test_missing_delivery_header_is_rejected(env: dict[str, str], lambda_context: Any) -> None:
    event = signed_job_event()
    del event["headers"]["x-github-delivery"]
    assert _call(event, lambda_context)[0] == 400
    assert drain(env["JOB_QUEUE_URL"]) == []


def test_body_over_the_cap_gets_413(
    env: dict[str, str], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reconfigure(monkeypatch, MAX_BODY_BYTES="1000")
    body = json.dumps(workflow_job_payload(labels=["self-hosted"] + ["x" * 100] * 10))
    status, answer = _call(proxy_event(body), lambda_context)
    assert (status, answer["error"]) == (413, "payload_too_large")
    assert drain(env["JOB_QUEUE_URL"]) == []


def test_no_secret_configured_fails_closed(
    env: dict[str, str], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reconfigure(monkeypatch, WEBHOOK_SECRET="")
    status, answer = _call(proxy_event(b"{}", secret=""), lambda_context)
    assert (status, answer["error"]) == (401, "secret_not_configured")
    assert drain(env["JOB_QUEUE_URL"]) == []


def test_secret_and_templates_come_from_ssm_parameters(
    env: dict[str, str], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/jitrunners/webhook-secret", Value=SSM_SECRET, Type="SecureString")
    ssm.put_parameter(Name="/jitrunners/templates", Value=env["RUNNER_TEMPLATES"], Type="String")
    monkeypatch.delenv("RUNNER_TEMPLATES")
    _reconfigure(
        monkeypatch,
        WEBHOOK_SECRET="",
        WEBHOOK_SECRET_PARAM="/jitrunners/webhook-secret",
        RUNNER_TEMPLATES_PARAM="/jitrunners/templates",
    )
    body = json.dumps(workflow_job_payload())
    assert _call(proxy_event(body, secret=SECRET), lambda_context)[0] == 401
    assert _call(proxy_event(body, secret=SSM_SECRET), lambda_context)[0] == 202
    assert len(drain(env["JOB_QUEUE_URL"])) == 1


def test_unreadable_secret_parameter_is_a_5xx_so_github_records_a_failure(
    env: dict[str, str], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reconfigure(monkeypatch, WEBHOOK_SECRET="", WEBHOOK_SECRET_PARAM="/jitrunners/missing")
    status, answer = _call(signed_job_event(), lambda_context)
    assert (status, answer["error"]) == (503, "secret_unavailable")


def test_enqueue_failure_is_a_5xx(
    env: dict[str, str], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reconfigure(monkeypatch, JOB_QUEUE_URL=env["JOB_QUEUE_URL"] + "-gone")
    status, answer = _call(signed_job_event(), lambda_context)
    assert (status, answer["error"]) == (500, "enqueue_failed")


def test_log_lines_carry_correlation_keys_and_never_the_secret_or_body(
    env: dict[str, str], lambda_context: Any, log_lines: Any
) -> None:
    event = signed_job_event(job_id=5150)
    event["headers"]["x-github-delivery"] = "dlv-5150"
    _call(event, lambda_context)
    out = log_lines.text()
    assert SECRET not in out
    assert event["headers"]["x-hub-signature-256"] not in out
    assert '"created_at"' not in out  # the payload body is never logged
    accepted = [line for line in log_lines() if line["message"] == "job accepted"]
    assert len(accepted) == 1
    line = accepted[0]
    assert (line["delivery_id"], line["job_id"], line["repo"], line["template"]) == (
        "dlv-5150",
        5150,
        "acme/widgets",
        "linux-x64",
    )
    assert line["correlation_id"] == event["requestContext"]["requestId"]


def test_metrics_are_emitted_as_emf(
    env: dict[str, str], lambda_context: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    _call(signed_job_event(), lambda_context)
    _call(proxy_event(b"{}", secret="wrong"), lambda_context)
    emf = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"_aws"' in line]
    names = [
        m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]
    ]
    assert names.count("WebhookReceived") == 2
    assert "WebhookAccepted" in names
    rejected = [doc for doc in emf if "WebhookRejected" in doc]
    assert rejected
    assert rejected[0]["reason"] == "bad_signature"


def test_cold_path_imports_no_github_or_ec2_code() -> None:
    import subprocess
    import sys

    code = (
        "import sys, jitrunners.handlers.webhook;"
        "bad=[m for m in ('requests','jwt','cryptography','jitrunners.aws.fleet',"
        "'jitrunners.github') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": "lambdas", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "stored",
    [
        "REPLACE_ME",  # what terraform/secrets.tf stores when the operator sets no secret
        "short-secret",  # 12 bytes: guessable, or a typo'd paste
        "REPLACE_ME\nstill-too-short",
    ],
)
def test_placeholder_or_short_secret_counts_as_not_configured(
    env: dict[str, str],
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    log_lines: Any,
    stored: str,
) -> None:
    """Anyone can read the module's placeholder: a delivery signed with it must not be taken."""
    boto3.client("ssm").put_parameter(
        Name="/jitrunners/webhook-secret", Value=stored, Type="SecureString"
    )
    _reconfigure(monkeypatch, WEBHOOK_SECRET="", WEBHOOK_SECRET_PARAM="/jitrunners/webhook-secret")
    body = json.dumps(workflow_job_payload())

    status, answer = _call(proxy_event(body, secret=stored.partition("\n")[0]), lambda_context)

    assert (status, answer["error"]) == (401, "secret_not_configured")
    assert "16 bytes" in answer["detail"]
    assert drain(env["JOB_QUEUE_URL"]) == []
    errors = [line["message"] for line in log_lines() if line["level"] == "ERROR"]
    assert errors == ["webhook secret not configured: every delivery is refused (fail closed)"]
    for line in stored.split("\n"):
        assert line not in log_lines.text()
    emf = [json.loads(line) for line in capfd.readouterr().out.splitlines() if '"_aws"' in line]
    names = [n["Name"] for d in emf for m in d["_aws"]["CloudWatchMetrics"] for n in m["Metrics"]]
    assert "WebhookSecretNotConfigured" in names


def test_short_line_of_a_rotation_is_dropped_and_the_long_one_still_verifies(
    env: dict[str, str], lambda_context: Any, monkeypatch: pytest.MonkeyPatch, log_lines: Any
) -> None:
    rotation = f"REPLACE_ME\n{SECRET}"
    _reconfigure(monkeypatch, WEBHOOK_SECRET=rotation)
    body = json.dumps(workflow_job_payload())

    assert _call(proxy_event(body, secret="REPLACE_ME"), lambda_context)[0] == 401
    assert _call(proxy_event(body, secret=SECRET), lambda_context)[0] == 202
    assert len(drain(env["JOB_QUEUE_URL"])) == 1
    assert "REPLACE_ME" not in log_lines.text()
    ignored = [line for line in log_lines() if line.get("ignored_lines") == 1]
    assert ignored
    assert all(line["level"] == "WARNING" for line in ignored)


# --- replay: each delivery id is enqueued at most once ------------------------------------------
@pytest.fixture
def deliveries_table(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """The claim table as terraform/deliveries.tf creates it."""
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(
        TableName="jitrunners-deliveries",
        KeySchema=[{"AttributeName": "delivery_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "delivery_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    _reconfigure(monkeypatch, DELIVERIES_TABLE="jitrunners-deliveries")
    return "jitrunners-deliveries"


def _claims(table: str) -> set[str]:
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return {item["delivery_id"]["S"] for item in items}


def test_replayed_delivery_is_answered_duplicate_and_enqueues_nothing(
    env: dict[str, str], deliveries_table: str, lambda_context: Any
) -> None:
    body = json.dumps(workflow_job_payload(job_id=61))
    event = proxy_event(body, delivery="dlv-61")

    first = _call(event, lambda_context)
    replayed = _call(event, lambda_context)  # GitHub's duplicate, or a captured delivery

    assert first == (202, {"accepted": True, "job_id": 61, "template": "linux-x64"})
    assert replayed == (202, {"ignored": "duplicate", "job_id": 61})
    assert len(drain(env["JOB_QUEUE_URL"])) == 1
    assert _claims(deliveries_table) == {"dlv-61"}


def _claim_items(table: str) -> dict[str, dict[str, Any]]:
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    return {item["delivery_id"]["S"]: item for item in items}


@pytest.mark.parametrize("action", ["in_progress", "completed"])
def test_a_swap_delivery_is_claimed_by_its_job_and_records_the_runner(
    env: dict[str, str], deliveries_table: str, lambda_context: Any, action: str
) -> None:
    """A delivery naming the runner of ours that took another job's place is claimed by job
    attempt and action, with the runner: a copy with a new delivery id (GitHub's own duplicate)
    is a duplicate, and scale-up reads the claim as the record that the job ran on one of ours."""
    runner = "i-0123456789abcdef0-70-1"  # launched for job 70, takes 71
    body = json.dumps(
        workflow_job_payload(action=action, job_id=71, run_attempt=2, runner_name=runner)
    )

    first = _call(proxy_event(body, delivery="dlv-71-a"), lambda_context)
    copy = _call(proxy_event(body, delivery="dlv-71-b"), lambda_context)

    assert first == (202, {"recorded": "taken", "job_id": 71})
    assert copy == (202, {"ignored": "duplicate", "job_id": 71})
    assert len(drain(env["JOB_QUEUE_URL"])) == 1
    [(key, item)] = _claim_items(deliveries_table).items()
    assert key == "ran:acme/widgets:71:2:in_progress"  # the attempt's taking, either action
    assert item["runner"]["S"] == runner
    assert deliveries.jobs_ran(
        deliveries_table, [key, "ran:acme/widgets:71:1:completed"], now=datetime.now(UTC)
    ) == {key: runner}


@pytest.mark.parametrize("order", [("in_progress", "completed"), ("completed", "in_progress")])
def test_a_swaps_two_deliveries_are_booked_once(
    env: dict[str, str], deliveries_table: str, lambda_context: Any, order: tuple[str, str]
) -> None:
    """R (launched for 75) took 76: its `in_progress` and its `completed` both say so, in
    whichever order GitHub delivers them. The first is claimed and enqueued; the second is a
    duplicate, neither claimed nor sent (a `SendMessage` and a booking saved per swap)."""
    runner = "i-0123456789abcdef0-75-1"
    answers = [
        _call(
            proxy_event(
                json.dumps(
                    workflow_job_payload(
                        action=action, job_id=76, runner_name=runner, conclusion="success"
                    )
                ),
                delivery=f"dlv-76-{action}",
            ),
            lambda_context,
        )
        for action in order
    ]

    assert answers == [
        (202, {"recorded": "taken", "job_id": 76}),
        (202, {"ignored": "duplicate", "job_id": 76}),
    ]
    assert len(drain(env["JOB_QUEUE_URL"])) == 1
    assert _claims(deliveries_table) == {"ran:acme/widgets:76:1:in_progress"}


def test_a_failed_jobs_completed_on_a_swapped_runner_still_sends_its_rerun_check(
    env: dict[str, str],
    deliveries_table: str,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With re-runs on, a failed `completed` is a `rerun` check, not a second `taken`: it keeps
    its own claim and message after the swap's `in_progress` was booked."""
    _reconfigure(monkeypatch, RERUN_INTERRUPTED_JOBS="true")
    runner = "i-0123456789abcdef0-77-1"
    for action, conclusion in (("in_progress", None), ("completed", "failure")):
        body = json.dumps(
            workflow_job_payload(
                action=action, job_id=78, runner_name=runner, conclusion=conclusion
            )
        )
        _call(proxy_event(body, delivery=f"dlv-78-{action}"), lambda_context)

    assert len(drain(env["JOB_QUEUE_URL"])) == 2
    assert _claims(deliveries_table) == {
        "ran:acme/widgets:78:1:in_progress",
        "ran:acme/widgets:78:1:completed",
    }


@pytest.mark.parametrize("runner", [None, "GitHub Actions 12", "build-host-3"])
def test_a_job_that_ended_without_our_runner_is_recorded_as_ended_elsewhere(
    env: dict[str, str], deliveries_table: str, lambda_context: Any, runner: str | None
) -> None:
    """A `completed` delivery of a job no runner of ours ran (cancelled while queued: no
    runner; or run by a runner not ours) is a `release`, claimed by job attempt like a swap's:
    a copy with a new id is a duplicate, and scale-up reads the claim as the job's end, so a
    launch of it still waiting in the queue drops without asking GitHub."""
    body = json.dumps(
        workflow_job_payload(
            action="completed", job_id=73, conclusion="cancelled", runner_name=runner
        )
    )

    first = _call(proxy_event(body, delivery="dlv-73-a"), lambda_context)
    copy = _call(proxy_event(body, delivery="dlv-73-b"), lambda_context)

    assert first == (202, {"recorded": "release", "job_id": 73})
    assert copy == (202, {"ignored": "duplicate", "job_id": 73})
    assert len(drain(env["JOB_QUEUE_URL"])) == 1
    [(key, item)] = _claim_items(deliveries_table).items()
    assert key == "ran:acme/widgets:73:1:completed"
    assert "runner" not in item
    assert deliveries.jobs_ran(
        deliveries_table, [key, "ran:acme/widgets:73:1:in_progress"], now=datetime.now(UTC)
    ) == {key: deliveries.ENDED_ELSEWHERE}
    assert (
        deliveries.taker({key: deliveries.ENDED_ELSEWHERE}, "acme/widgets", 73, 1)
        == deliveries.ENDED_ELSEWHERE
    )


def test_a_waiting_job_is_released_but_not_recorded_as_ended(
    env: dict[str, str], deliveries_table: str, lambda_context: Any
) -> None:
    """`waiting` (an environment's approval) is a `release` too, but the job is not over: its
    claim stays the delivery id's, so a launch after the approval is not dropped."""
    body = json.dumps(workflow_job_payload(action="waiting", job_id=74))

    assert _call(proxy_event(body, delivery="dlv-74"), lambda_context) == (
        202,
        {"recorded": "release", "job_id": 74},
    )
    assert _claims(deliveries_table) == {"dlv-74"}


def test_a_swap_delivery_that_failed_to_enqueue_gives_its_job_claim_back(
    env: dict[str, str],
    deliveries_table: str,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = "i-0123456789abcdef0-70-1"
    body = json.dumps(workflow_job_payload(action="in_progress", job_id=72, runner_name=runner))
    _reconfigure(monkeypatch, JOB_QUEUE_URL=env["JOB_QUEUE_URL"] + "-gone")
    assert _call(proxy_event(body, delivery="dlv-72"), lambda_context)[1] == {
        "error": "enqueue_failed"
    }
    assert _claims(deliveries_table) == set(), "no record of a job ran that nothing booked"

    _reconfigure(monkeypatch, JOB_QUEUE_URL=env["JOB_QUEUE_URL"])
    assert _call(proxy_event(body, delivery="dlv-72"), lambda_context)[1] == {
        "recorded": "taken",
        "job_id": 72,
    }


def test_delivery_that_failed_to_enqueue_is_released_so_its_redelivery_is_taken(
    env: dict[str, str],
    deliveries_table: str,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    event = proxy_event(json.dumps(workflow_job_payload(job_id=62)), delivery="dlv-62")
    _reconfigure(monkeypatch, JOB_QUEUE_URL=env["JOB_QUEUE_URL"] + "-gone")
    assert _call(event, lambda_context)[1] == {"error": "enqueue_failed"}
    assert _claims(deliveries_table) == set()

    _reconfigure(monkeypatch, JOB_QUEUE_URL=env["JOB_QUEUE_URL"])
    status, answer = _call(event, lambda_context)  # GitHub's (or the housekeeper's) redelivery

    assert (status, answer.get("accepted")) == (202, True)
    assert len(drain(env["JOB_QUEUE_URL"])) == 1


def test_unavailable_claim_store_is_a_5xx_and_enqueues_nothing(
    env: dict[str, str], deliveries_table: str, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reconfigure(monkeypatch, DELIVERIES_TABLE="jitrunners-no-such-table")
    status, answer = _call(signed_job_event(), lambda_context)
    assert (status, answer) == (503, {"error": "claim_unavailable"})
    assert drain(env["JOB_QUEUE_URL"]) == []


@pytest.mark.parametrize(
    ("created_at", "reason"),
    [("2020-01-01T00:00:00Z", "job_too_old"), ("yesterday", "job_age_unknown")],
)
def test_queued_delivery_of_a_job_older_than_the_claim_window_is_ignored(
    env: dict[str, str], deliveries_table: str, lambda_context: Any, created_at: str, reason: str
) -> None:
    """A replay after the claim expired: the job it names is older than the claim window."""
    body = json.dumps(workflow_job_payload(job_id=63, created_at=created_at))
    status, answer = _call(proxy_event(body), lambda_context)
    assert (status, answer) == (202, {"ignored": reason, "job_id": 63})
    assert drain(env["JOB_QUEUE_URL"]) == []
    assert _claims(deliveries_table) == set()


def test_job_just_inside_the_claim_window_is_still_taken(
    env: dict[str, str], deliveries_table: str, lambda_context: Any
) -> None:
    from datetime import UTC, datetime, timedelta

    queued = datetime.now(UTC) - timedelta(days=3) + timedelta(minutes=5)
    stamp = queued.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    body = json.dumps(workflow_job_payload(job_id=64, created_at=stamp))
    assert _call(proxy_event(body), lambda_context)[1].get("accepted") is True


def test_job_whose_repository_does_not_say_private_is_refused_as_public(
    env: dict[str, str], lambda_context: Any
) -> None:
    payload = workflow_job_payload(job_id=65)
    del payload["repository"]["private"]
    del payload["repository"]["visibility"]
    status, answer = _call(proxy_event(json.dumps(payload)), lambda_context)
    assert (status, answer) == (202, {"ignored": "public_repo", "job_id": 65})
    assert drain(env["JOB_QUEUE_URL"]) == []


@pytest.mark.parametrize("version", ["2.0", "1.0"])
def test_a_signed_dry_run_says_what_would_happen_and_claims_and_enqueues_nothing(
    env: dict[str, str], deliveries_table: str, lambda_context: Any, version: str
) -> None:
    body = json.dumps(workflow_job_payload(job_id=71, labels=["self-hosted", "ARM64"]))
    dry = {"X-Jitrunners-Dry-Run": "1"}
    event = proxy_event(body, delivery="dlv-71", version=version, extra_headers=dry)

    assert _call(event, lambda_context) == (
        202,
        {"dry_run": True, "would": "launch", "job_id": 71, "template": "linux-arm64"},
    )
    assert drain(env["JOB_QUEUE_URL"]) == []
    assert _claims(deliveries_table) == set()
    # The same delivery without the header is then a real one, not a duplicate.
    real = proxy_event(body, delivery="dlv-71", version=version)
    assert _call(real, lambda_context)[1] == {
        "accepted": True,
        "job_id": 71,
        "template": "linux-arm64",
    }


def test_a_dry_run_is_checked_like_any_delivery(env: dict[str, str], lambda_context: Any) -> None:
    dry = {"X-Jitrunners-Dry-Run": "true"}
    body = json.dumps(workflow_job_payload(job_id=72))
    unsigned = proxy_event(body, secret="wrong-secret-but-long-enough-000", extra_headers=dry)
    assert _call(unsigned, lambda_context)[0] == 401
    public = json.dumps(workflow_job_payload(job_id=73, private=False))
    assert _call(proxy_event(public, extra_headers=dry), lambda_context) == (
        202,
        {"ignored": "public_repo", "job_id": 73},
    )
    assert drain(env["JOB_QUEUE_URL"]) == []


@pytest.mark.parametrize("action", ["in_progress", "completed"])
def test_a_job_on_the_runner_launched_for_it_costs_no_message(
    env: dict[str, str], lambda_context: Any, action: str
) -> None:
    """models.runner_name: our runner's name says which job attempt it was launched for; when
    it took that job there is no swap to book, so nothing is claimed or enqueued."""
    payload = workflow_job_payload(action=action, job_id=61, runner_name=f"{RECLAIMED}-61-1")
    status, answer = _call(proxy_event(json.dumps(payload)), lambda_context)
    assert (status, answer) == (202, {"recorded": "own_runner", "job_id": 61})
    assert drain(env["JOB_QUEUE_URL"]) == []


@pytest.mark.parametrize(
    ("runner", "why"),
    [
        (f"{RECLAIMED}-60-1", "launched for another job"),
        (f"{RECLAIMED}-61-2", "launched for another attempt of this job"),
        (RECLAIMED, "named by its instance alone (started before names carried the job)"),
    ],
)
def test_a_job_on_another_runner_of_ours_is_booked_by_instance(
    env: dict[str, str], lambda_context: Any, runner: str, why: str
) -> None:
    payload = workflow_job_payload(action="in_progress", job_id=61, runner_name=runner)
    status, answer = _call(proxy_event(json.dumps(payload)), lambda_context)
    assert (status, answer) == (202, {"recorded": "taken", "job_id": 61}), why
    [sent] = [json.loads(m["Body"]) for m in drain(env["JOB_QUEUE_URL"])]
    assert (sent["kind"], sent["instance_id"]) == ("taken", RECLAIMED), why


def test_a_failed_job_on_a_runner_named_after_its_job_is_checked_on_its_instance(
    env: dict[str, str], lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reconfigure(monkeypatch, RERUN_INTERRUPTED_JOBS="true")
    payload = workflow_job_payload(
        action="completed", job_id=61, conclusion="failure", runner_name=f"{RECLAIMED}-61-1"
    )
    status, answer = _call(proxy_event(json.dumps(payload)), lambda_context)
    assert (status, answer) == (202, {"rerun_check": True, "job_id": 61})
    [sent] = [json.loads(m["Body"]) for m in drain(env["JOB_QUEUE_URL"])]
    assert (sent["kind"], sent["instance_id"]) == ("rerun", RECLAIMED)
