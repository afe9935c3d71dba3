"""The delivery-claim adapter against moto DynamoDB."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from jitrunners.aws import deliveries
from jitrunners.aws.clients import client

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DAY = 86_400


@pytest.fixture
def table(aws: None) -> str:
    boto3.client("dynamodb").create_table(
        TableName="claims",
        KeySchema=[{"AttributeName": "delivery_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "delivery_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return "claims"


def test_a_delivery_id_is_claimed_once_until_its_claim_expires(table: str) -> None:
    assert deliveries.claim(table, "d-1", now=NOW, ttl_s=3 * DAY) is True
    assert deliveries.claim(table, "d-1", now=NOW + timedelta(days=1), ttl_s=3 * DAY) is False
    assert deliveries.claim(table, "d-2", now=NOW, ttl_s=3 * DAY) is True
    # DynamoDB's TTL deletes lazily: an expired item counts as absent.
    assert deliveries.claim(table, "d-1", now=NOW + timedelta(days=4), ttl_s=3 * DAY) is True


def test_released_claim_can_be_claimed_again(table: str) -> None:
    assert deliveries.claim(table, "d-3", now=NOW, ttl_s=DAY)
    deliveries.release(table, "d-3")
    assert deliveries.claim(table, "d-3", now=NOW, ttl_s=DAY)


def test_store_faults_are_typed_errors(aws: None) -> None:
    with pytest.raises(deliveries.DeliveryStoreError):
        deliveries.claim("missing", "d-4", now=NOW, ttl_s=DAY)
    with pytest.raises(deliveries.DeliveryStoreError):
        deliveries.release("missing", "d-4")


def test_a_launch_claim_admits_its_own_delivery_again_and_refuses_others(table: str) -> None:
    key = "launch:acme/widgets:7:1:1"
    assert deliveries.claim_launch(table, key, "dlv-a", now=NOW, ttl_s=600)
    assert deliveries.claim_launch(table, key, "dlv-a", now=NOW, ttl_s=600)  # its retry
    assert not deliveries.claim_launch(table, key, "dlv-b", now=NOW, ttl_s=600)  # a duplicate
    later = NOW + timedelta(seconds=601)
    assert deliveries.claim_launch(table, key, "dlv-b", now=later, ttl_s=600)  # expired
    deliveries.release(table, key)
    assert deliveries.claim_launch(table, key, "dlv-c", now=later, ttl_s=600)


# --- a batch's launch claims: one transaction -------------------------------------------------
@pytest.fixture
def requests(aws: None) -> Iterator[list[str]]:
    """The DynamoDB operations the adapter sends, in order (each attempt botocore makes)."""
    sent: list[str] = []

    def note(model: Any, **_: Any) -> None:
        sent.append(model.name)

    events = client("dynamodb").meta.events
    events.register("before-call.dynamodb", note)
    yield sent
    events.unregister("before-call.dynamodb", note)


def launch(job: int) -> str:
    return f"launch:acme/widgets:{job}:1:1"


def owner_of(table: str, key: str) -> str | None:
    item = boto3.client("dynamodb").get_item(TableName=table, Key={"delivery_id": {"S": key}})
    return item.get("Item", {}).get("owner", {}).get("S")


def test_a_batch_of_fresh_launch_claims_is_one_transaction(table: str, requests: list[str]) -> None:
    claims = [(launch(job), f"dlv-{job}") for job in range(1, 11)]

    answers = deliveries.claim_launches(table, claims, now=NOW, ttl_s=600)

    assert answers == dict.fromkeys(claims, True)
    assert requests == ["TransactWriteItems"]
    assert [owner_of(table, launch(job)) for job in range(1, 11)] == [
        f"dlv-{job}" for job in range(1, 11)
    ]


def test_a_lone_launch_claim_is_a_plain_conditional_put(table: str, requests: list[str]) -> None:
    assert deliveries.claim_launches(table, [(launch(1), "dlv-1")], now=NOW, ttl_s=600) == {
        (launch(1), "dlv-1"): True
    }
    assert requests == ["PutItem"]


def test_claims_another_delivery_holds_are_refused_and_the_rest_are_written(
    table: str, requests: list[str]
) -> None:
    assert deliveries.claim_launch(table, launch(2), "dlv-other", now=NOW, ttl_s=600)
    assert deliveries.claim_launch(table, launch(4), "dlv-other", now=NOW, ttl_s=600)
    requests.clear()
    claims = [(launch(job), f"dlv-{job}") for job in range(1, 6)]

    answers = deliveries.claim_launches(table, claims, now=NOW, ttl_s=600)

    assert answers == {
        (launch(1), "dlv-1"): True,
        (launch(2), "dlv-2"): False,
        (launch(3), "dlv-3"): True,
        (launch(4), "dlv-4"): False,
        (launch(5), "dlv-5"): True,
    }
    # The cancelled transaction, then one without the refused claims.
    assert requests == ["TransactWriteItems", "TransactWriteItems"]
    assert owner_of(table, launch(2)) == owner_of(table, launch(4)) == "dlv-other"
    for job in (1, 3, 5):  # written: another delivery of the job is refused now
        assert not deliveries.claim_launch(table, launch(job), "dlv-late", now=NOW, ttl_s=600)


def test_a_batch_reclaims_its_own_launches_and_takes_over_expired_ones(table: str) -> None:
    assert deliveries.claim_launch(table, launch(1), "dlv-1", now=NOW, ttl_s=600)
    assert deliveries.claim_launch(table, launch(2), "dlv-gone", now=NOW, ttl_s=600)
    assert deliveries.claim_launch(table, launch(3), "dlv-live", now=NOW, ttl_s=6000)
    later = NOW + timedelta(seconds=601)
    claims = [(launch(1), "dlv-1"), (launch(2), "dlv-2"), (launch(3), "dlv-3")]

    answers = deliveries.claim_launches(table, claims, now=later, ttl_s=600)

    assert answers == {claims[0]: True, claims[1]: True, claims[2]: False}
    assert owner_of(table, launch(2)) == "dlv-2"


def test_a_job_claimed_twice_in_one_batch_goes_to_its_first_delivery(
    table: str, requests: list[str]
) -> None:
    """Two deliveries of one job in one batch: as claims one after another would answer, and
    never one item twice in a transaction (DynamoDB refuses that whole request)."""
    claims = [
        (launch(1), "dlv-a"),
        (launch(2), "dlv-2"),
        (launch(1), "dlv-b"),
        (launch(1), "dlv-a"),  # the first delivery's own copy
    ]

    answers = deliveries.claim_launches(table, claims, now=NOW, ttl_s=600)

    assert answers == {
        (launch(1), "dlv-a"): True,
        (launch(2), "dlv-2"): True,
        (launch(1), "dlv-b"): False,
    }
    assert requests == ["TransactWriteItems"]
    assert owner_of(table, launch(1)) == "dlv-a"


def test_a_job_claimed_twice_goes_to_the_later_delivery_when_it_holds_the_claim(
    table: str,
) -> None:
    """The first delivery is refused (the second holds the job already): the second, its
    owner, is admitted again, as claims one after another would answer."""
    assert deliveries.claim_launch(table, launch(1), "dlv-b", now=NOW, ttl_s=600)
    claims = [(launch(1), "dlv-a"), (launch(2), "dlv-2"), (launch(1), "dlv-b")]

    answers = deliveries.claim_launches(table, claims, now=NOW, ttl_s=600)

    assert answers == {claims[0]: False, claims[1]: True, claims[2]: True}
    assert owner_of(table, launch(1)) == "dlv-b"


def test_more_than_a_transactions_worth_of_claims_is_split(table: str, requests: list[str]) -> None:
    claims = [(launch(job), f"dlv-{job}") for job in range(150)]

    answers = deliveries.claim_launches(table, claims, now=NOW, ttl_s=600)

    assert answers == dict.fromkeys(claims, True)
    assert requests == ["TransactWriteItems", "TransactWriteItems"]


def test_a_claim_cancelled_by_a_concurrent_write_is_decided_alone(
    table: str, requests: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DynamoDB cancels a transaction whose item another transaction is writing
    (`TransactionConflict`; moto never does): that claim is made alone, the rest go again."""
    dynamodb = client("dynamodb")
    real = dynamodb.transact_write_items
    calls: list[int] = []

    def conflicted_once(**params: Any) -> Any:
        calls.append(len(params["TransactItems"]))
        if len(calls) == 1:
            reasons = [{"Code": "None"}, {"Code": "TransactionConflict"}, {"Code": "None"}]
            raise ClientError(
                {
                    "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                    "CancellationReasons": reasons,
                },
                "TransactWriteItems",
            )
        return real(**params)

    monkeypatch.setattr(dynamodb, "transact_write_items", conflicted_once)
    claims = [(launch(job), f"dlv-{job}") for job in range(1, 4)]

    answers = deliveries.claim_launches(table, claims, now=NOW, ttl_s=600)

    assert answers == dict.fromkeys(claims, True)
    assert calls == [3, 2]  # the first transaction, then the two without the conflicted one
    assert requests == ["PutItem", "TransactWriteItems"]  # the conflicted one alone
    assert [owner_of(table, launch(job)) for job in range(1, 4)] == ["dlv-1", "dlv-2", "dlv-3"]


def test_launch_claims_the_store_refuses_are_a_typed_error(aws: None) -> None:
    with pytest.raises(deliveries.DeliveryStoreError):
        deliveries.claim_launches(
            "missing", [(launch(1), "dlv-1"), (launch(2), "dlv-2")], now=NOW, ttl_s=600
        )
    with pytest.raises(deliveries.DeliveryStoreError):
        deliveries.claim_launches("missing", [(launch(1), "dlv-1")], now=NOW, ttl_s=600)


# --- the job-ran records --------------------------------------------------------------------
def test_job_ran_records_name_the_runner_or_an_end_elsewhere_and_expire(table: str) -> None:
    ours = deliveries.ran_key("Acme/Widgets", 7, 1, "in_progress")
    ended = deliveries.ran_key("acme/widgets", 8, 1, "completed")
    assert ours == "ran:acme/widgets:7:1:in_progress"
    assert deliveries.claim(table, ours, now=NOW, ttl_s=DAY, runner="i-0abc-7-1")
    assert deliveries.claim(table, ended, now=NOW, ttl_s=DAY, runner=deliveries.ENDED_ELSEWHERE)
    assert deliveries.claim(table, "dlv-9", now=NOW, ttl_s=DAY)  # a delivery id: no record
    keys = [ours, ended, "dlv-9", deliveries.ran_key("acme/widgets", 9, 1, "completed")]

    found = deliveries.jobs_ran(table, keys, now=NOW)

    assert found == {ours: "i-0abc-7-1", ended: deliveries.ENDED_ELSEWHERE}
    assert deliveries.taker(found, "acme/widgets", 7, 1) == "i-0abc-7-1"
    assert deliveries.taker(found, "acme/widgets", 8, 1) == deliveries.ENDED_ELSEWHERE
    assert deliveries.taker(found, "acme/widgets", 8, 2) is None  # another attempt
    assert deliveries.jobs_ran(table, keys, now=NOW + timedelta(days=2)) == {}


def test_job_ran_keys_dynamodb_leaves_unread_are_an_error_not_absent_records(
    table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An absent record lets a launch go ahead without asking GitHub: a key DynamoDB did not
    read (`UnprocessedKeys`, its throttling) must not pass for one. The caller asks GitHub."""
    key = deliveries.ran_key("acme/widgets", 7, 1, "completed")
    assert deliveries.claim(table, key, now=NOW, ttl_s=DAY, runner=deliveries.ENDED_ELSEWHERE)
    dynamodb = client("dynamodb")

    def throttled(**params: Any) -> Any:
        keys = params["RequestItems"][table]["Keys"]
        return {"Responses": {table: []}, "UnprocessedKeys": {table: {"Keys": keys}}}

    monkeypatch.setattr(dynamodb, "batch_get_item", throttled)
    with pytest.raises(deliveries.DeliveryStoreError, match="unprocessed"):
        deliveries.jobs_ran(table, [key], now=NOW)
