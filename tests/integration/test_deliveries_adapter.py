"""The delivery-claim adapter against moto DynamoDB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from jitrunners.aws import deliveries

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
