"""The local stack's speed patches of moto (devstack/moto_fixes.py) answer as moto does: EC2
instances found by id through an index (across reservations, ones made after the index was
built, unknown ids refused), live listings past ended reservations, SQS delays and visibility
read from one clock per scan."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from devstack import moto_fixes

pytestmark = pytest.mark.e2e

AMI = "ami-12c6146b"


@pytest.fixture
def ec2() -> Iterator[Any]:
    moto_fixes.apply()
    with mock_aws():
        yield boto3.client("ec2", region_name="eu-west-1")


def _launch(ec2: Any, count: int, name: str) -> list[str]:
    answer = ec2.run_instances(
        ImageId=AMI, MinCount=count, MaxCount=count, InstanceType="m5.large",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "n", "Value": name}]}],
    )  # fmt: skip
    return [i["InstanceId"] for i in answer["Instances"]]


def _described(ec2: Any, **kwargs: Any) -> list[list[str]]:
    """Instance ids, grouped by reservation, as DescribeInstances answers."""
    reservations = ec2.describe_instances(**kwargs)["Reservations"]
    return [[i["InstanceId"] for i in r["Instances"]] for r in reservations]


def test_instances_are_found_by_id_across_reservations_old_and_new(ec2: Any) -> None:
    first = _launch(ec2, 3, "first")
    second = _launch(ec2, 2, "second")
    # Only the named instances, in their reservations, in the order they were made.
    assert _described(ec2, InstanceIds=[second[1], first[2], first[0]]) == [
        [first[0], first[2]], [second[1]],
    ]  # fmt: skip
    third = _launch(ec2, 1, "third")  # made after the index was built
    assert _described(ec2, InstanceIds=third) == [third]
    # The answer copies reservations: every instance is still there for the next look.
    assert _described(ec2) == [first, second, third]

    ec2.terminate_instances(InstanceIds=[first[1], third[0]])
    running = {"Name": "instance-state-name", "Values": ["running"]}
    ids = [first[1], second[0], third[0]]
    assert _described(ec2, InstanceIds=ids, Filters=[running]) == [[second[0]]]
    # Filters alone (a listing of live instances): the state first, then the rest.
    assert _described(ec2, Filters=[running]) == [[first[0], first[2]], second]
    named = {"Name": "tag:n", "Values": ["first", "third"]}
    ended = {"Name": "instance-state-name", "Values": ["terminated", "shutting-down"]}
    assert _described(ec2, Filters=[named, ended]) == [[first[1]], third]
    assert _described(ec2, Filters=[named]) == [first, third]
    states = ec2.describe_instance_status(InstanceIds=ids, IncludeAllInstances=True)
    assert {s["InstanceId"]: s["InstanceState"]["Name"] for s in states["InstanceStatuses"]} == {
        first[1]: "terminated", second[0]: "running", third[0]: "terminated",
    }  # fmt: skip


def test_launching_instances_looks_them_up_without_rebuilding_the_index(ec2: Any) -> None:
    """run_instances appends each instance to a reservation already indexed and looks it up as
    it sets it up (its volume): found among the newest reservations, not by a rebuild of the
    whole index (every instance of a burst, per instance launched)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[DEFAULT_ACCOUNT_ID]["eu-west-1"]
    first = _launch(ec2, 2, "first")
    assert _described(ec2, InstanceIds=first) == [first]  # the index is built
    built = backend._instance_index
    more = [i for n in range(4) for i in _launch(ec2, 3, f"more-{n}")]
    assert backend._instance_index is built
    assert _described(ec2, InstanceIds=[more[-1], first[0]]) == [[first[0]], [more[-1]]]
    with pytest.raises(ClientError, match=r"InvalidInstanceID\.NotFound"):
        ec2.describe_instances(InstanceIds=["i-0123456789abcdef0"])


def test_a_listing_of_live_instances_walks_past_reservations_that_ended(ec2: Any) -> None:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[DEFAULT_ACCOUNT_ID]["eu-west-1"]
    first = _launch(ec2, 2, "first")
    second = _launch(ec2, 2, "second")
    live = {"Name": "instance-state-name", "Values": ["pending", "running", "stopped"]}
    assert _described(ec2, Filters=[live]) == [first, second]
    ec2.terminate_instances(InstanceIds=[*first, second[0]])
    ec2.stop_instances(InstanceIds=[second[1]])
    assert _described(ec2, Filters=[live]) == [[second[1]]]
    # The first reservation ended: later live listings no longer walk it.
    [[second_id]] = [
        [r["ReservationId"]] for r in ec2.describe_instances(InstanceIds=second)["Reservations"]
    ]
    assert list(backend._live_reservations) == [second_id]
    third = _launch(ec2, 1, "third")  # made since: walked
    ec2.start_instances(InstanceIds=[second[1]])
    assert _described(ec2, Filters=[live]) == [[second[1]], third]
    # Listings that may include terminated instances still walk every reservation.
    ended = {"Name": "instance-state-name", "Values": ["terminated"]}
    assert _described(ec2, Filters=[ended]) == [first, [second[0]]]
    assert _described(ec2, Filters=[{"Name": "tag:n", "Values": ["first"]}]) == [first]
    assert _described(ec2) == [first, second, third]
    # An `instance-id` filter: the named instances in any state, unknown ids left out.
    unknown = "i-0123456789abcdef0"
    named = {"Name": "instance-id", "Values": [third[0], unknown, second[1], first[1], second[0]]}
    assert _described(ec2, Filters=[named]) == [[first[1]], second, third]
    assert _described(ec2, Filters=[named, ended]) == [[first[1]], [second[0]]]
    assert _described(ec2, Filters=[named, live, {"Name": "tag:n", "Values": ["third"]}]) == [third]


def test_an_unknown_instance_id_is_refused_as_aws_refuses_it(ec2: Any) -> None:
    known = _launch(ec2, 1, "known")
    for call in (
        lambda: ec2.describe_instances(InstanceIds=[known[0], "i-0123456789abcdef0"]),
        lambda: ec2.terminate_instances(InstanceIds=["i-0123456789abcdef0"]),
        lambda: ec2.describe_instance_status(InstanceIds=["i-0123456789abcdef0"]),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    assert _described(ec2, InstanceIds=known) == [known]


def test_sqs_delays_and_visibility_hold_as_in_moto() -> None:
    moto_fixes.apply()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        url = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="now")
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=1)

        def depth() -> tuple[int, int, int]:
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                     "ApproximateNumberOfMessagesDelayed"]  # fmt: skip
            got = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
            return tuple(int(got[n]) for n in names)  # type: ignore[return-value]

        assert depth() == (1, 0, 1)
        taken = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in taken] == ["now"]  # the delayed one is not yet visible
        assert depth() == (0, 1, 1)
        assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages") is None
        time.sleep(1.2)  # past the delay and the visibility timeout
        again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert sorted(m["Body"] for m in again) == ["later", "now"]
        assert depth() == (0, 2, 0)


def test_sqs_deletes_by_any_receipt_handle_a_message_had_as_in_moto() -> None:
    moto_fixes.apply()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        url = sqs.create_queue(QueueName="jobs", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
        for body in ("a", "b"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        first = {m["Body"]: m["ReceiptHandle"] for m in sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10)["Messages"]}  # fmt: skip
        again = {m["Body"]: m["ReceiptHandle"] for m in sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10)["Messages"]}  # fmt: skip
        assert first["a"] != again["a"]
        sqs.delete_message(QueueUrl=url, ReceiptHandle=first["a"])  # an earlier receipt's handle
        sqs.delete_message(QueueUrl=url, ReceiptHandle=again["a"])  # deleted already: no error
        with pytest.raises(ClientError) as refused:
            sqs.delete_message(QueueUrl=url, ReceiptHandle="never-issued")
        assert refused.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"
        left = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        assert [m["Body"] for m in left] == ["b"]


def test_a_terminated_instance_gives_its_address_back_to_the_subnet(ec2: Any) -> None:
    """A /28 has 11 addresses for instances: three rounds of 8 fit only if each round's
    terminated instances free theirs, as in EC2 (moto kept them for good)."""
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/28")["Subnet"]["SubnetId"]
    seen: set[str] = set()
    for _ in range(3):
        launched = ec2.run_instances(
            ImageId=AMI, MinCount=8, MaxCount=8, SubnetId=subnet, InstanceType="m5.large"
        )["Instances"]
        addresses = [i["PrivateIpAddress"] for i in launched]
        assert len(set(addresses)) == 8  # no address given twice at once
        seen.update(addresses)
        ec2.terminate_instances(InstanceIds=[i["InstanceId"] for i in launched])
    assert len(seen) <= 11


def test_a_cancelled_transaction_leaves_its_items_as_they_were_without_copying_the_table() -> None:
    from moto.dynamodb import models
    from moto.dynamodb.models.table import Table

    moto_fixes.apply()
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="eu-west-1")
        ddb.create_table(
            TableName="claims",
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ddb.put_item(TableName="claims", Item={"k": {"S": "held"}, "v": {"S": "old"}})
        ddb.put_item(TableName="claims", Item={"k": {"S": "other"}, "v": {"S": "kept"}})

        def put(key: str, value: str, *, absent: bool) -> dict[str, Any]:
            item: dict[str, Any] = {
                "TableName": "claims",
                "Item": {"k": {"S": key}, "v": {"S": value}},
            }
            if absent:
                item["ConditionExpression"] = "attribute_not_exists(k)"
            return {"Put": item}

        with pytest.raises(ClientError) as cancelled:
            ddb.transact_write_items(
                TransactItems=[
                    put("fresh", "new", absent=True),  # would pass, written before the refusal
                    put("held", "new", absent=False),  # would pass: overwrites
                    put("other", "new", absent=True),  # refused: it exists
                ]
            )
        reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
        assert reasons == ["None", "None", "ConditionalCheckFailed"]

        def value(key: str) -> str | None:
            item = ddb.get_item(TableName="claims", Key={"k": {"S": key}}).get("Item")
            return item["v"]["S"] if item else None

        assert (value("fresh"), value("held"), value("other")) == (None, "old", "kept")
        ddb.transact_write_items(TransactItems=[put("fresh", "new", absent=True)])
        assert value("fresh") == "new"
        # moto's own backup, a deep copy of the whole table per item, is not made.
        table = models.dynamodb_backends["123456789012"]["eu-west-1"].tables["claims"]
        assert isinstance(table, Table)
        assert models.copy.deepcopy(table) is table


def test_the_stack_reads_what_a_queue_holds_by_kind_without_receiving_it() -> None:
    import json

    from devstack.aws_world import REGION, AwsWorld

    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "launch"}))
        taken = json.dumps({"kind": "taken"})
        sqs.send_message(QueueUrl=url, MessageBody=taken, DelaySeconds=60)
        [held] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=60)["Messages"]
        assert json.loads(held["Body"]) == {"kind": "launch"}
        sqs.send_message(QueueUrl=url, MessageBody="not a job message")
        world = AwsWorld()
        expected = {
            "launch in-flight received 1": 1,
            "taken delayed received 0": 1,
            "? visible received 0": 1,
        }
        assert world.queue_contents(url) == expected
        assert world.queue_contents(url) == expected  # reading it received nothing


def test_a_fifo_group_with_a_message_in_flight_is_held_back_as_in_moto() -> None:
    with mock_aws():
        moto_fixes.apply()
        sqs = boto3.client("sqs", region_name="eu-west-1")
        url = sqs.create_queue(
            QueueName="jobs.fifo",
            Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
        )["QueueUrl"]
        for group, body in (("a", "a1"), ("a", "a2"), ("b", "b1")):
            sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group)
        first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)
        assert [m["Body"] for m in first["Messages"]] == ["a1"]
        # Group a has a message in flight (read from a copy of the in-flight set): only b's.
        second = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)
        assert [m["Body"] for m in second["Messages"]] == ["b1"]


def test_the_serializer_writes_what_moto_s_own_picking_writes(ec2: Any) -> None:
    from moto.core.serialize import ResponseSerializer

    first = _launch(ec2, 3, "first")
    ec2.stop_instances(InstanceIds=first[:1])
    ec2.create_tags(Resources=first[1:2], Tags=[{"Key": "extra", "Value": "1"}])
    image = ec2.create_image(InstanceId=first[2], Name="img")["ImageId"]

    def answers() -> list[dict[str, Any]]:
        found = [
            ec2.describe_instances(),
            ec2.describe_instances(Filters=[{"Name": "tag:n", "Values": ["first"]}]),
            # Image.CreationDate has one of EC2's response transformers: moto's own path.
            ec2.describe_images(ImageIds=[image]),
            ec2.describe_instance_status(IncludeAllInstances=True),
        ]
        for answer in found:
            answer.pop("ResponseMetadata")
        return found

    fast = ResponseSerializer.get_value
    ours = answers()
    ResponseSerializer.get_value = fast.__wrapped__  # moto's picking, as it ships
    try:
        theirs = answers()
    finally:
        ResponseSerializer.get_value = fast
    assert ours == theirs
    assert ours[2]["Images"][0]["CreationDate"]


def test_the_watcher_is_given_each_live_instance_every_round_and_each_ended_one_once(
    ec2: Any,
) -> None:
    """`AwsWorld.instance_changes` (the local stack's watcher, once a round): every instance of
    ours not terminated, each round; one terminated since, once; one not ours, never. It reads
    only the reservations with an instance it was not given as terminated."""
    from devstack.aws_world import AwsWorld

    world = AwsWorld(prefix="jr")

    def ours(count: int) -> list[str]:
        answer = ec2.run_instances(
            ImageId=AMI, MinCount=count, MaxCount=count, InstanceType="m5.large",
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": "jitrunners:prefix", "Value": "jr"}]}
            ],
        )  # fmt: skip
        return [i["InstanceId"] for i in answer["Instances"]]

    def given() -> dict[str, str]:
        return {i["InstanceId"]: i["State"]["Name"] for i in world.instance_changes()}

    first, second = ours(2), ours(1)
    _launch(ec2, 1, "not-ours")
    assert given() == dict.fromkeys(first + second, "running")
    ec2.terminate_instances(InstanceIds=[first[0], *second])
    assert given() == {first[0]: "terminated", first[1]: "running", second[0]: "terminated"}
    third = ours(1)
    assert given() == {first[1]: "running", third[0]: "running"}
    assert len(world._watch_open) == 3  # the first, the not-ours one, the third: not the second
    ec2.terminate_instances(InstanceIds=[first[1]])
    assert given() == {first[1]: "terminated", third[0]: "running"}
    assert given() == {third[0]: "running"}
    # What the others read is unchanged: every instance of ours, ended ones too.
    assert {i["InstanceId"] for i in world.instances_in_process()} == {*first, *second, *third}


def test_the_server_finds_each_host_s_backend_once_and_as_moto_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    moto_fixes.apply()
    app = DomainDispatcherApplication(create_backend_app)
    hosts = [
        "ec2.eu-west-1.amazonaws.com",
        "ssm.eu-west-1.amazonaws.com",
        "sqs.eu-west-1.amazonaws.com",
        "dynamodb.eu-west-1.amazonaws.com",
        "moto_api",
        None,
    ]
    expected = {"ec2": "ec2", "ssm": "ssm", "sqs": "sqs", "dynamodb": "dynamodb"}
    for host in hosts:
        found = app.get_backend_for_host(host)
        service = (host or "").split(".")[0]
        assert found == expected.get(service, "moto_api" if host == "moto_api" else None), host
    tried: list[str] = []

    class Pattern:
        def match(self, url: str) -> None:
            tried.append(url)

    # A second lookup of a host tries no URL pattern: its backend is known.
    monkeypatch.setattr(app, "backend_url_patterns", [("nothing", Pattern())])
    assert [app.get_backend_for_host(h) for h in hosts[:4]] == ["ec2", "ssm", "sqs", "dynamodb"]
    assert tried == []
    assert app.get_backend_for_host("elsewhere.example") is None
    assert tried == ["http://elsewhere.example"]


_NAMES = st.sampled_from(["a", "Item", "instanceId", "tagSet", "x-y", "ns:q"])
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet="ab &<>\"'\n\t;é", max_size=6),
)


def _children(values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    attributes = st.dictionaries(st.sampled_from(["@id", "@type", "#text"]), _SCALARS, max_size=2)
    namespaces = st.dictionaries(
        st.just("@xmlns"),
        st.one_of(_SCALARS, st.dictionaries(st.sampled_from(["", "p"]), _SCALARS)),
    )
    elements = st.dictionaries(_NAMES, values, max_size=4)
    return st.builds(lambda a, n, e: {**a, **n, **e}, attributes, namespaces, elements)


_VALUES = st.recursive(
    _SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3), _children(inner)), max_leaves=25
)


@settings(max_examples=400, deadline=None)
@given(root=_NAMES, value=_VALUES)
def test_ec2_xml_writes_xmltodict_s_document_character_for_character(root: str, value: Any) -> None:
    import xmltodict

    body = {root: value}
    try:
        expected = xmltodict.unparse(body, full_document=True, short_empty_elements=True)
    except ValueError:  # xmltodict refuses a root that is a list of several
        return
    assert moto_fixes.ec2_xml(body) == expected


def test_ec2_answers_are_written_as_xmltodict_writes_them(
    ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto's own bodies (instances with tags, states, a fleet, errors aside) through both."""
    import xmltodict

    written: list[tuple[Any, str]] = []
    plain = moto_fixes.ec2_xml

    def recorded(body: Any) -> str:
        written.append((body, plain(body)))
        return written[-1][1]

    monkeypatch.setattr(moto_fixes, "ec2_xml", recorded)
    ids = _launch(ec2, 3, "first")
    ec2.stop_instances(InstanceIds=ids[:1])
    ec2.create_tags(Resources=ids[1:], Tags=[{"Key": "a&b", "Value": "<1>"}])
    described = ec2.describe_instances(Filters=[{"Name": "tag:n", "Values": ["first"]}])
    ec2.describe_instance_status(IncludeAllInstances=True)
    ec2.terminate_instances(InstanceIds=ids[2:])
    assert len(written) == 6  # run, stop, tag, describe, status, terminate
    for body, ours in written:
        assert ours == xmltodict.unparse(body, full_document=True, short_empty_elements=True)
    tags = {t["Key"]: t["Value"] for t in described["Reservations"][0]["Instances"][1]["Tags"]}
    assert tags["a&b"] == "<1>"


def test_a_terminated_instance_is_described_from_what_it_was_written_as_until_it_changes(
    ec2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.instances import StateReason

    monkeypatch.setattr(moto_fixes, "ENDED_SETTLED_S", 0.0)
    ids = _launch(ec2, 2, "ended")
    ec2.terminate_instances(InstanceIds=ids)

    def described() -> dict[str, dict[str, Any]]:
        answer = ec2.describe_instances(InstanceIds=ids)
        return {i["InstanceId"]: i for r in answer["Reservations"] for i in r["Instances"]}

    first = described()
    assert {i["State"]["Name"] for i in first.values()} == {"terminated"}
    instance = ec2_backends["123456789012"]["eu-west-1"].get_instance(ids[0])
    instance.instance_type = "m5.24xlarge"  # never happens to an ended one: shows the reuse
    assert described() == first
    # What can still change on an ended instance is written anew: its tags, its state reason.
    ec2.create_tags(Resources=ids[:1], Tags=[{"Key": "late", "Value": "1"}])
    tagged = described()
    assert {"Key": "late", "Value": "1"} in tagged[ids[0]]["Tags"]
    assert tagged[ids[0]]["InstanceType"] == "m5.24xlarge"
    instance.instance_type = "m5.large"
    assert described() == tagged
    instance.state_reason = StateReason("Server.SpotInstanceTermination: x", "Server.Spot")
    reclaimed = described()
    assert reclaimed[ids[0]]["StateReason"]["Code"] == "Server.Spot"
    assert reclaimed[ids[0]]["InstanceType"] == "m5.large"
    assert reclaimed[ids[1]] == first[ids[1]]
