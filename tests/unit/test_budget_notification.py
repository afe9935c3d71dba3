"""Reading the text AWS Budgets publishes to SNS, and scale-up's view of spot-only."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from jitrunners import budget, guardrail
from jitrunners.budget import BudgetNotification, NotABudgetNotification
from tests.support.lambdas import budget_message, sns_event


def record(message: str, subject: str = "AWS Budgets: x has exceeded your alert threshold") -> Any:
    return sns_event(message, subject=subject)["Records"][0]


def test_a_monthly_actual_notification_reads_every_field() -> None:
    subject, message = budget_message(amount="$1,234.56", threshold="> $1,000.00")
    found = BudgetNotification.from_sns_record(record(message, subject))
    assert found == BudgetNotification(
        budget_name="jitrunners-monthly",
        budget_type="Cost",
        alert_type="ACTUAL",
        budgeted_amount="$1,000.00",
        threshold="> $1,000.00",
        amount="$1,234.56",
        message_id="8d2f5c61-0b3e-5a47-9e12-7c4b1a9d3f08",
        topic_arn="arn:aws:sns:eu-west-1:123456789012:jitrunners-budget",
    )
    assert found.summary == (
        "ACTUAL cost of budget jitrunners-monthly $1,234.56"
        " (threshold > $1,000.00, budgeted $1,000.00)"
    )


def test_a_daily_and_a_forecasted_notification() -> None:
    _, daily = budget_message(budget="jitrunners-daily", daily=True, amount="$70.12")
    assert BudgetNotification.parse(daily).budget_name == "jitrunners-daily"
    _, forecast = budget_message(alert_type="FORECASTED", amount="$1,500.00")
    parsed = BudgetNotification.parse(forecast)
    assert (parsed.alert_type, parsed.amount) == ("FORECASTED", "$1,500.00")


def test_the_letter_above_the_fields_does_not_confuse_the_reader() -> None:
    """The letter mentions the alert type and amounts in prose; only the field lines count."""
    _, message = budget_message(amount="$9.99")
    assert "Dear AWS Customer,\n" in message
    assert BudgetNotification.parse(message).amount == "$9.99"


@pytest.mark.parametrize(
    "message",
    [
        "Successfully validated SNS topic for Amazon SES.",
        '{"AlarmName": "x", "NewStateValue": "ALARM"}',
        "Budget Name: jitrunners-monthly\nBudget Type: Cost\n",  # no alert type
        "Budget Name: jitrunners-monthly\nAlert Type: SOMEDAY\n",
        "",
    ],
    ids=["ses-test", "cloudwatch-alarm", "no-alert-type", "unknown-alert-type", "empty"],
)
def test_what_is_not_a_budget_notification(message: str) -> None:
    with pytest.raises(NotABudgetNotification):
        BudgetNotification.parse(message)


@pytest.mark.parametrize(
    "raw",
    [{"EventSource": "aws:sqs", "body": "x"}, {"EventSource": "aws:sns", "Sns": "x"}, "record"],
    ids=["sqs-record", "sns-without-object", "not-an-object"],
)
def test_what_is_not_an_sns_record(raw: Any) -> None:
    with pytest.raises(NotABudgetNotification):
        BudgetNotification.from_sns_record(raw)


def test_the_budgets_of_a_deployment() -> None:
    assert budget.budget_names("ci") == {"ci-monthly", "ci-daily"}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_scale_up_reads_spot_only_once_a_minute_and_fails_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    guardrail.spot_only_cache.clear()
    reads: list[str] = []
    answers: list[Any] = [guardrail.Record("t", "b", "budget", "r"), None]

    def read(prefix: str, mode: str) -> Any:
        reads.append(mode)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(guardrail, "read_record", read)
    clock = Clock()
    assert guardrail.launch_market("spot-then-on-demand", "p", clock) == "spot"
    assert guardrail.launch_market("on-demand", "p", clock) == "spot"
    assert reads == [guardrail.SPOT_ONLY]  # cached
    clock.t += guardrail.SPOT_ONLY_CACHE_S
    assert guardrail.launch_market("on-demand", "p", clock) == "on-demand"  # lifted
    assert guardrail.launch_market("spot", "p", clock) == "spot"  # nothing to read
    assert len(reads) == 2

    denied = ClientError({"Error": {"Code": "AccessDeniedException"}}, "GetParameter")
    answers[:] = [guardrail.Record("t", "b", "budget", "r"), denied]
    clock.t += guardrail.SPOT_ONLY_CACHE_S
    assert guardrail.launch_market("on-demand", "p", clock) == "spot"
    clock.t += guardrail.SPOT_ONLY_CACHE_S
    assert guardrail.launch_market("on-demand", "p", clock) == "spot"  # last known kept
    guardrail.spot_only_cache.clear()
