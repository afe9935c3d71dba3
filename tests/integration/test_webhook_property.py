"""Property: no forged, unsigned or malformed request yields a 5xx, an exception or a message."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitrunners.handlers import webhook
from jitrunners.signature import sign
from tests.support.webhooks import SECRET, workflow_job_payload

text = st.text(max_size=60)
header_names = st.sampled_from(
    [
        "x-hub-signature-256",
        "X-Hub-Signature-256",
        "X-HUB-SIGNATURE-256",
        "x-github-event",
        "X-GitHub-Event",
        "x-github-delivery",
        "content-type",
        "x-hub-signature",
    ]
) | st.text(max_size=30)
header_values = (
    text
    # Oversized values, built from a short drawn text: drawing 20,000 characters one by one
    # cost hypothesis most of this test's time for no more hostility.
    | st.builds(
        lambda t, n: (t * n)[:20_000], st.text(min_size=1, max_size=8), st.integers(5_000, 20_000)
    )
    | st.sampled_from(
        ["sha256=", "sha1=abc", "sha256=" + "0" * 64, "sha256=" + "g" * 64, "workflow_job", "ping"]
    )
)


@st.composite
def forged_signature(draw: st.DrawFn, body: bytes) -> str | None:
    good = sign(SECRET, body)
    return draw(
        st.one_of(
            st.none(),
            st.just(sign("not-the-secret", body)),
            st.just(good[: draw(st.integers(0, len(good) - 1))]),  # truncated
            st.just(
                good.replace("sha256=", draw(st.sampled_from(["sha1=", "SHA256=", "", "sha512="])))
            ),
            st.just(good + draw(st.text(min_size=1, max_size=5))),
            text,
        )
    )


bodies = st.one_of(
    st.binary(max_size=2_000),
    text.map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | text,
        lambda c: st.lists(c, max_size=4) | st.dictionaries(text, c, max_size=4),
        max_leaves=12,
    ).map(lambda v: json.dumps(v).encode()),
    st.builds(lambda p: json.dumps(p).encode(), st.just(workflow_job_payload())),
)


@st.composite
def hostile_event(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """An API Gateway event; the flag says whether it carries a valid signature (of bad content)."""
    body = draw(bodies)
    headers = draw(st.dictionaries(header_names, header_values, max_size=6))
    signed_validly = False
    choice = draw(st.integers(0, 2))
    if choice == 0:
        sig = draw(forged_signature(body))
        if sig is not None:
            headers["X-Hub-Signature-256"] = sig
    elif choice == 1:
        # A valid signature over content that is not a valid queued workflow_job.
        body = draw(
            st.one_of(
                st.binary(max_size=500).filter(lambda b: not _is_valid_job(b)),
                st.builds(
                    lambda p: json.dumps(p).encode(),
                    st.fixed_dictionaries(
                        {
                            "action": st.just("queued"),
                            "workflow_job": st.dictionaries(text, text, max_size=3),
                        }
                    ),
                ),
            )
        )
        headers = {
            "X-Hub-Signature-256": sign(SECRET, body),
            "X-GitHub-Event": draw(st.sampled_from(["workflow_job", "push", ""])),
            "X-GitHub-Delivery": draw(text),
        }
        signed_validly = True
    b64 = draw(st.booleans())
    event: dict[str, Any] = {
        "headers": headers,
        "body": base64.b64encode(body).decode() if b64 else body.decode("utf-8", "replace"),
        "isBase64Encoded": b64,
        "requestContext": {"requestId": draw(text)},
    }
    if draw(st.booleans()):
        event["version"] = "2.0"
    if draw(st.integers(0, 9)) == 0:
        event[draw(st.sampled_from(["body", "headers", "isBase64Encoded"]))] = draw(
            st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=2), text)
        )
    return event, signed_validly


def _is_valid_job(body: bytes) -> bool:
    try:
        return json.loads(body).get("action") == "queued"
    except Exception:  # noqa: BLE001
        return False


def test_hostile_requests_never_5xx_never_raise_never_enqueue(
    env: dict[str, str], lambda_context: Any
) -> None:
    sqs = boto3.client("sqs")
    seen = {"n": 0}

    @settings(
        max_examples=2_000,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(hostile_event())
    def check(case: tuple[dict[str, Any], bool]) -> None:
        event, _ = case
        seen["n"] += 1
        response = webhook.handler(event, lambda_context)
        assert 400 <= response["statusCode"] < 500 or response["statusCode"] in (200, 202)
        json.loads(response["body"])

    check()
    assert seen["n"] >= 2_000
    attrs = sqs.get_queue_attributes(
        QueueUrl=env["JOB_QUEUE_URL"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"
