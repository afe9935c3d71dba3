"""The local stack's request authorizer on boto3 clients against moto: denied calls fail as AWS
fails them, allowed ones reach moto, and launches, RunCommand and the runner's own parameter are
authorized with the resources and context AWS uses."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.iam.enforce import (
    BackendLookup,
    Enforcer,
    MotoLookup,
    NoPrincipal,
    Principal,
    UnmodelledOperation,
)
from tests.support import world as world_support
from tests.support.ec2 import AMI

REGION = "eu-west-1"
ACCOUNT = "123456789012"
EC2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
JIT = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/jitrunners/jit/*"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/jitrunners-scale-up-lambda"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/jitrunners-scale-up-lambda/devstack"


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


class World:
    """Moto with what the module creates, plus enforced clients for one principal at a time."""

    def __init__(self, lookup: type[MotoLookup] = MotoLookup) -> None:
        self.policies: list[dict[str, Any]] = []
        self.principal = Principal.role(ROLE, lambda: self.policies)
        self.lookup = lookup(self.raw, REGION, ACCOUNT)
        self.enforcer = Enforcer(lambda: self.principal, self.lookup, region=REGION)
        ec2, iam = self.raw("ec2"), self.raw("iam")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        self.group = ec2.create_security_group(GroupName="runner", Description="r", VpcId=vpc)[
            "GroupId"
        ]
        self.image = AMI  # one of moto's built-in images
        self.profiles = {}
        for name in ("jitrunners-runner", "someone-else"):
            role = iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
            profile = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
            self.profiles[name] = (profile["Arn"], role)

    @staticmethod
    def raw(service: str) -> Any:
        return boto3.client(service, region_name=REGION)

    def client(self, service: str) -> Any:
        return self.enforcer.attach(boto3.client(service, region_name=REGION))

    def launch_template(self, name: str, *, volume_tags: bool) -> str:
        prefix = [{"Key": "jitrunners:prefix", "Value": "jitrunners"}]
        specs = [{"ResourceType": "instance", "Tags": prefix}]
        if volume_tags:
            specs.append({"ResourceType": "volume", "Tags": prefix})
        self.raw("ec2").create_launch_template(
            LaunchTemplateName=name,
            LaunchTemplateData={
                "ImageId": self.image,
                "InstanceType": "m5.large",
                "SecurityGroupIds": [self.group],
                "IamInstanceProfile": {"Arn": self.profiles["jitrunners-runner"][0]},
                "TagSpecifications": specs,
            },
            TagSpecifications=[{"ResourceType": "launch-template", "Tags": prefix}],
        )
        return name

    def instance(self, profile: str, tags: dict[str, str]) -> str:
        return self.raw("ec2").run_instances(
            ImageId=self.image,
            MinCount=1,
            MaxCount=1,
            IamInstanceProfile={"Arn": self.profiles[profile][0]},
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                }
            ],
        )["Instances"][0]["InstanceId"]


@pytest.fixture(params=[MotoLookup, BackendLookup], ids=["through-boto3", "moto-backends"])
def world(aws: None, request: pytest.FixtureRequest) -> World:
    """Every check with both lookups: the local stack reads EC2 from moto's backends."""
    return World(request.param)


def test_the_backend_lookup_answers_as_moto_does_through_boto3(aws: None) -> None:
    world = World()
    through, direct = world.lookup, BackendLookup(World.raw, REGION, ACCOUNT)
    ours = world.instance("jitrunners-runner", {"jitrunners:prefix": "jitrunners", "a": "1"})
    theirs = world.instance("someone-else", {"team": "web"})
    ec2 = World.raw("ec2")
    ec2.create_tags(Resources=[ours], Tags=[{"Key": "jitrunners:job-id", "Value": "7"}])
    ec2.delete_tags(Resources=[ours], Tags=[{"Key": "a"}])
    ec2.create_tags(Resources=[world.subnet], Tags=[{"Key": "tier", "Value": "runners"}])
    ec2.terminate_instances(InstanceIds=[theirs])
    for instance_id in (ours, theirs, "i-00000000000000000"):
        assert direct.instance(instance_id) == through.instance(instance_id), instance_id
    found = direct.instance(ours)
    assert found is not None
    assert found.tags == {"jitrunners:prefix": "jitrunners", "jitrunners:job-id": "7"}
    assert found.instance_profile_arn == world.profiles["jitrunners-runner"][0]
    for resource in (ours, world.subnet, world.group, "subnet-00000000"):
        assert direct.ec2_tags(resource) == through.ec2_tags(resource), resource
    ssm = World.raw("ssm")
    ssm.put_parameter(Name="/jitrunners/jit/i-1", Value="x", Type="SecureString")
    ssm.put_parameter(Name="/jitrunners/jit/i-1", Value="y", Type="SecureString", Overwrite=True)
    ssm.add_tags_to_resource(
        ResourceType="Parameter",
        ResourceId="/jitrunners/jit/i-1",
        Tags=[{"Key": "jitrunners:prefix", "Value": "jitrunners"}],
    )
    ssm.put_parameter(Name="plain", Value="1", Type="String")
    ssm.put_parameter(Name="keyed", Value="1", Type="SecureString", KeyId="alias/runners")
    ssm.put_parameter(Name="/gone", Value="1", Type="String")
    ssm.delete_parameter(Name="/gone")
    names = ["/jitrunners/jit/i-1", "jitrunners/jit/i-1", "plain", "/plain", "keyed", "/gone"]
    for name in [*names, "/jitrunners/jit", "/nothing", "arn:aws:ssm:x:1:parameter/plain"]:
        assert direct.parameter(name) == through.parameter(name), name
    tagged = direct.parameter("/jitrunners/jit/i-1")
    assert tagged is not None
    assert (tagged.type, tagged.tags) == ("SecureString", {"jitrunners:prefix": "jitrunners"})


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = exc.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


# ---------------------------------------------------------------------------------- error shapes
def test_denied_ec2_call_is_unauthorized_operation(world: World) -> None:
    with pytest.raises(ClientError) as exc:
        world.client("ec2").describe_instances()
    code, message, status = error(exc)
    assert (code, status) == ("UnauthorizedOperation", 403)
    assert message.startswith(
        "You are not authorized to perform this operation. "
        f"User: {SESSION} is not authorized to perform: ec2:DescribeInstances on resource: * "
        "because no identity-based policy allows the ec2:DescribeInstances action. "
        "Encoded authorization failure message: "
    )


def test_denied_ssm_call_is_access_denied_exception(world: World) -> None:
    world.raw("ssm").put_parameter(Name="/jitrunners/config/x", Value="v", Type="String")
    world.policies = [
        policy({"Sid": "NoConfig", "Effect": "Deny", "Action": "ssm:*", "Resource": "*"})
    ]
    with pytest.raises(ClientError) as exc:
        world.client("ssm").get_parameter(Name="/jitrunners/config/x")
    arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/jitrunners/config/x"
    assert error(exc) == (
        "AccessDeniedException",
        f"User: {SESSION} is not authorized to perform: ssm:GetParameter on resource: {arn} "
        "with an explicit deny in an identity-based policy",
        400,
    )


def test_denied_sqs_call_is_access_denied(world: World) -> None:
    url = world.raw("sqs").create_queue(QueueName="jitrunners-jobs")["QueueUrl"]
    with pytest.raises(ClientError) as exc:
        world.client("sqs").send_message(QueueUrl=url, MessageBody="{}")
    code, message, status = error(exc)
    assert (code, status) == ("AccessDenied", 400)
    assert message.endswith(
        f"sqs:SendMessage on resource: arn:aws:sqs:{REGION}:{ACCOUNT}:jitrunners-jobs "
        "because no identity-based policy allows the sqs:SendMessage action"
    )


def test_allowed_call_reaches_moto(world: World) -> None:
    sqs = world.raw("sqs")
    url = sqs.create_queue(QueueName="jitrunners-jobs")["QueueUrl"]
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:jitrunners-jobs"
    world.policies = [policy({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": queue})]
    world.client("sqs").send_message(QueueUrl=url, MessageBody="hello")
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "hello"


def test_queue_key_policy_that_does_not_delegate_fails_send_with_kms_access_denied(
    world: World,
) -> None:
    key = world.raw("kms").create_key(
        Policy=json.dumps(
            policy(
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/admin"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            )
        )
    )["KeyMetadata"]["Arn"]
    url = world.raw("sqs").create_queue(QueueName="q", Attributes={"KmsMasterKeyId": key})[
        "QueueUrl"
    ]
    world.policies = [
        policy(
            {
                "Effect": "Allow",
                "Action": ["sqs:SendMessage", "kms:GenerateDataKey"],
                "Resource": "*",
            }
        )
    ]
    with pytest.raises(ClientError) as exc:
        world.client("sqs").send_message(QueueUrl=url, MessageBody="{}")
    code, message, status = error(exc)
    assert (code, status) == ("KMS.AccessDeniedException", 400)
    assert (
        f"kms:GenerateDataKey on resource: {key} because no resource-based policy allows" in message
    )


def test_an_operation_without_a_rule_fails_loudly(world: World) -> None:
    world.policies = [policy({"Effect": "Allow", "Action": "*", "Resource": "*"})]
    with pytest.raises(UnmodelledOperation, match=r"sqs\.ListQueues"):
        world.client("sqs").list_queues()


def test_a_call_without_a_principal_fails(world: World) -> None:
    world.principal = None  # type: ignore[assignment]
    with pytest.raises(NoPrincipal):
        world.client("ec2").describe_instances()


def test_authorization_comes_before_hooks_that_answer_calls(world: World) -> None:
    ec2 = world.client("ec2")
    ec2.meta.events.register(
        "before-call.ec2.DescribeInstances", lambda **_: (_ok(), {"Reservations": []})
    )
    with pytest.raises(ClientError, match="UnauthorizedOperation"):
        ec2.describe_instances()


def _ok() -> Any:
    from devstack.iam.enforce import _Http

    return _Http(200)


# ---------------------------------------------------------------------------------- launches
SCALE_UP_LAUNCH = [
    {
        "Sid": "LaunchTaggedInstances",
        "Effect": "Allow",
        "Action": ["ec2:CreateFleet", "ec2:RunInstances"],
        "Resource": [f"{EC2}:instance/*", f"{EC2}:volume/*"],
        "Condition": {"StringEquals": {"aws:RequestTag/jitrunners:prefix": "jitrunners"}},
    },
    {
        "Sid": "LaunchFromOurTemplatesIntoOurNetwork",
        "Effect": "Allow",
        "Action": ["ec2:CreateFleet", "ec2:RunInstances"],
        "Resource": [
            f"{EC2}:launch-template/*",
            f"{EC2}:subnet/*",
            f"{EC2}:security-group/*",
            f"arn:aws:ec2:{REGION}::image/*",
            f"{EC2}:network-interface/*",
            f"{EC2}:spot-instances-request/*",
            f"{EC2}:fleet/*",
        ],
    },
    {
        "Sid": "TagAtCreation",
        "Effect": "Allow",
        "Action": "ec2:CreateTags",
        "Resource": f"{EC2}:*/*",
        "Condition": {"StringEquals": {"ec2:CreateAction": ["CreateFleet", "RunInstances"]}},
    },
    {
        "Sid": "PassRunnerRole",
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": f"arn:aws:iam::{ACCOUNT}:role/jitrunners-runner",
        "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
    },
]


def create_fleet(world: World, template: str) -> dict[str, Any]:
    return world.client("ec2").create_fleet(
        Type="instant",
        LaunchTemplateConfigs=[
            {
                "LaunchTemplateSpecification": {
                    "LaunchTemplateName": template,
                    "Version": "$Default",
                },
                "Overrides": [{"InstanceType": "m5.large", "SubnetId": world.subnet}],
            }
        ],
        TargetCapacitySpecification={
            "TotalTargetCapacity": 1,
            "DefaultTargetCapacityType": "spot",
            "SpotTargetCapacity": 1,
        },
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "jitrunners:job-id", "Value": "7"}]}
        ],
    )


def test_fleet_from_a_template_without_volume_tags_is_denied(world: World) -> None:
    world.policies = [policy(*SCALE_UP_LAUNCH)]
    template = world.launch_template("jitrunners-linux", volume_tags=False)
    with pytest.raises(ClientError) as exc:
        create_fleet(world, template)
    code, message, _ = error(exc)
    assert code == "UnauthorizedOperation"
    assert f"is not authorized to perform: ec2:CreateFleet on resource: {EC2}:volume/*" in message
    assert not world.raw("ec2").describe_instances()["Reservations"]


def test_fleet_from_a_template_that_tags_volumes_is_allowed(world: World) -> None:
    world.policies = [policy(*SCALE_UP_LAUNCH)]
    template = world.launch_template("jitrunners-linux", volume_tags=True)
    response = create_fleet(world, template)
    assert [i for group in response["Instances"] for i in group["InstanceIds"]]
    checked = {(check.action, check.resource) for _, check, _ in world.enforcer.decisions}
    assert ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/jitrunners-runner") in checked
    assert ("ec2:RunInstances", f"{EC2}:subnet/{world.subnet}") in checked
    assert ("ec2:CreateTags", f"{EC2}:instance/*") in checked


def test_fleet_needs_pass_role_on_the_template_profile(world: World) -> None:
    world.policies = [policy(*SCALE_UP_LAUNCH[:3])]
    template = world.launch_template("jitrunners-linux", volume_tags=True)
    with pytest.raises(ClientError) as exc:
        create_fleet(world, template)
    assert (
        "iam:PassRole on resource: arn:aws:iam::123456789012:role/jitrunners-runner"
        in error(exc)[1]
    )


def test_launch_template_context_keys(world: World) -> None:
    # Launching only from our templates, as the EC2 guide's launch-template example does.
    only_templates = {
        "Effect": "Deny",
        "Action": "ec2:RunInstances",
        "Resource": f"{EC2}:instance/*",
        "Condition": {"ArnNotLike": {"ec2:LaunchTemplate": f"{EC2}:launch-template/*"}},
    }
    world.policies = [policy(*SCALE_UP_LAUNCH, only_templates)]
    create_fleet(world, world.launch_template("jitrunners-linux", volume_tags=True))
    with pytest.raises(ClientError, match="explicit deny"):
        world.client("ec2").run_instances(
            ImageId=world.image,
            MinCount=1,
            MaxCount=1,
            SubnetId=world.subnet,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": "jitrunners:prefix", "Value": "jitrunners"}],
                },
                {
                    "ResourceType": "volume",
                    "Tags": [{"Key": "jitrunners:prefix", "Value": "jitrunners"}],
                },
            ],
        )


def on_instances(action: str, condition: dict[str, Any]) -> dict[str, Any]:
    """A policy allowing `action` on any instance under `condition`."""
    allow = {"Effect": "Allow", "Action": action, "Resource": f"{EC2}:instance/*"}
    return policy(allow | {"Condition": condition})


def test_terminate_only_our_instances(world: World) -> None:
    ours = world.instance("jitrunners-runner", {"jitrunners:prefix": "jitrunners"})
    theirs = world.instance("jitrunners-runner", {"team": "web"})
    world.policies = [
        on_instances(
            "ec2:TerminateInstances",
            {"StringEquals": {"aws:ResourceTag/jitrunners:prefix": "jitrunners"}},
        )
    ]
    ec2 = world.client("ec2")
    ec2.terminate_instances(InstanceIds=[ours])
    with pytest.raises(
        ClientError, match=f"ec2:TerminateInstances on resource: {EC2}:instance/{theirs}"
    ):
        ec2.terminate_instances(InstanceIds=[theirs])


def test_a_tag_write_racing_an_instances_end_is_refused_and_told_apart(world: World) -> None:
    """Ending an instance takes its profile away, and the `ec2:InstanceProfile` condition with
    it: a tag write that raced the end is refused (AWS's answer too) and listed in `raced_ends`;
    a refusal on a live instance (a policy that does not allow it) is not."""
    profile = world.profiles["jitrunners-runner"][0]
    ended = world.instance("jitrunners-runner", {"jitrunners:prefix": "jitrunners"})
    live = world.instance("someone-else", {"jitrunners:prefix": "jitrunners"})
    world.policies = [
        on_instances("ec2:CreateTags", {"ArnEquals": {"ec2:InstanceProfile": profile}})
    ]
    ec2 = world.client("ec2")
    ec2.create_tags(Resources=[ended], Tags=[{"Key": "jitrunners:job-id", "Value": "1"}])
    world.raw("ec2").terminate_instances(InstanceIds=[ended])
    for instance_id in (ended, live):
        with pytest.raises(ClientError, match=f"ec2:CreateTags on resource: {EC2}:instance/"):
            ec2.create_tags(
                Resources=[instance_id], Tags=[{"Key": "jitrunners:job-id", "Value": "2"}]
            )
    assert [c.resource for c in world.enforcer.raced_ends] == [f"{EC2}:instance/{ended}"]


# ---------------------------------------------------------------------------------- RunCommand
def test_send_command_to_an_instance_with_another_profile_is_denied(world: World) -> None:
    runner_profile = world.profiles["jitrunners-runner"][0]
    tags = {"jitrunners:prefix": "jitrunners"}
    ours = world.instance("jitrunners-runner", tags)
    impostor = world.instance("someone-else", tags)
    world.policies = [
        policy(
            {
                "Effect": "Allow",
                "Action": "ssm:SendCommand",
                "Resource": f"{EC2}:instance/*",
                "Condition": {
                    "StringEquals": {"aws:ResourceTag/jitrunners:prefix": "jitrunners"},
                    "ArnEquals": {"ec2:InstanceProfile": runner_profile},
                },
            },
            {
                "Effect": "Allow",
                "Action": "ssm:SendCommand",
                "Resource": f"arn:aws:ssm:{REGION}::document/AWS-RunShellScript",
            },
        )
    ]
    ssm = world.client("ssm")
    ssm.send_command(
        InstanceIds=[ours], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]}
    )
    with pytest.raises(ClientError) as exc:
        ssm.send_command(
            InstanceIds=[impostor],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["true"]},
        )
    assert error(exc)[0] == "AccessDeniedException"
    assert f"ssm:SendCommand on resource: {EC2}:instance/{impostor}" in error(exc)[1]


# ---------------------------------------------------------------------------------- the runner
RUNNER = [
    {
        "Sid": "DenyOtherInstancesJitConfigs",
        "Effect": "Deny",
        "Action": ["ssm:GetParameter", "ssm:DeleteParameter"],
        "Resource": JIT,
        "Condition": {
            "StringNotEquals": {
                "aws:ResourceTag/jitrunners:instance-arn": "${ec2:SourceInstanceARN}"
            }
        },
    },
    {
        "Sid": "OwnJitConfigOnly",
        "Effect": "Allow",
        "Action": ["ssm:GetParameter", "ssm:DeleteParameter"],
        "Resource": JIT,
        "Condition": {
            "StringEquals": {"aws:ResourceTag/jitrunners:instance-arn": "${ec2:SourceInstanceARN}"}
        },
    },
    {
        "Sid": "DecryptJitConfigThroughSsm",
        "Effect": "Allow",
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": f"ssm.{REGION}.amazonaws.com"}},
    },
]


def jit_parameter(world: World, instance_id: str, key: str) -> str:
    name = f"/jitrunners/jit/{instance_id}"
    world.raw("ssm").put_parameter(
        Name=name,
        Value=f"config-of-{instance_id}",
        Type="SecureString",
        KeyId=key,
        Tags=[{"Key": "jitrunners:instance-arn", "Value": f"{EC2}:instance/{instance_id}"}],
    )
    return name


def test_runner_reads_its_own_jit_parameter_and_not_another(world: World) -> None:
    key = world.raw("kms").create_key()["KeyMetadata"]["KeyId"]  # default policy: delegates to IAM
    mine = world.instance("jitrunners-runner", {"jitrunners:prefix": "jitrunners"})
    other = world.instance("jitrunners-runner", {"jitrunners:prefix": "jitrunners"})
    runner_role = world.profiles["jitrunners-runner"][1]
    world.principal = Principal.instance(
        runner_role, lambda: [policy(*RUNNER)], f"{EC2}:instance/{mine}"
    )
    ssm = world.client("ssm")
    own = ssm.get_parameter(Name=jit_parameter(world, mine, key), WithDecryption=True)
    assert own["Parameter"]["Value"] == f"config-of-{mine}"
    with pytest.raises(ClientError) as exc:
        ssm.get_parameter(Name=jit_parameter(world, other, key), WithDecryption=True)
    assert error(exc) == (
        "AccessDeniedException",
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/jitrunners-runner/{mine} is not authorized to "
        f"perform: ssm:GetParameter on resource: arn:aws:ssm:{REGION}:{ACCOUNT}:parameter"
        f"/jitrunners/jit/{other} with an explicit deny in an identity-based policy",
        400,
    )


def test_runner_decrypt_needs_the_key_policy_too(world: World) -> None:
    admin_only = policy(
        {
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/admin"},
            "Action": "kms:*",
            "Resource": "*",
        }
    )
    key = world.raw("kms").create_key(Policy=json.dumps(admin_only))["KeyMetadata"]["KeyId"]
    mine = world.instance("jitrunners-runner", {"jitrunners:prefix": "jitrunners"})
    world.principal = Principal.instance(
        world.profiles["jitrunners-runner"][1], lambda: [policy(*RUNNER)], f"{EC2}:instance/{mine}"
    )
    ssm = world.client("ssm")
    name = jit_parameter(world, mine, key)
    with pytest.raises(ClientError) as exc:
        ssm.get_parameter(Name=name, WithDecryption=True)
    code, message, _ = error(exc)
    assert code == "AccessDeniedException"
    assert "kms:Decrypt on resource: arn:aws:kms:" in message
    assert "because no resource-based policy allows the kms:Decrypt action" in message
    # Without decryption no key is used.
    assert ssm.get_parameter(Name=name)["Parameter"]["Name"] == name


# ---------------------------------------------------------------------------------- the stack
def lambda_role(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/jitrunners-{name}-lambda"


KEYS = ("webhook", "redrive")


def test_each_function_invocation_acts_as_its_own_role(world: World) -> None:
    from devstack.iam.principals import Principals, lambda_enforcer
    from devstack.shims import Function

    url = world.raw("sqs").create_queue(QueueName="jitrunners-jobs")["QueueUrl"]
    send = policy({"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"})
    principals = Principals()
    principals.register("webhook", Principal.role(lambda_role("webhook"), lambda: [send]))
    principals.register("redrive", Principal.role(lambda_role("redrive"), list))
    sqs = lambda_enforcer(world.lookup, REGION).attach(boto3.client("sqs", region_name=REGION))
    functions = {key: Function(key, "jitrunners", principals=principals) for key in KEYS}
    for function in functions.values():
        function.handler = lambda event, context: sqs.send_message(QueueUrl=url, MessageBody="x")
    functions["webhook"].invoke({})
    with pytest.raises(ClientError, match="jitrunners-redrive-lambda/devstack is not authorized"):
        functions["redrive"].invoke({})
    with pytest.raises(NoPrincipal):
        sqs.send_message(QueueUrl=url, MessageBody="outside any invocation")


def test_powertools_parameters_read_through_the_hooked_client(world: World) -> None:
    from devstack.iam.principals import acting_as, attach_lambda_clients, lambda_enforcer
    from jitrunners.aws.params import ParameterError, get_text

    world.raw("ssm").put_parameter(Name="/jitrunners/config/templates", Value="[]", Type="String")
    attach_lambda_clients(lambda_enforcer(world.lookup, REGION))
    reader = policy({"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*"})
    with acting_as(Principal.role(lambda_role("webhook"), lambda: [reader])):
        assert get_text("/jitrunners/config/templates", max_age=0) == "[]"
    with (
        acting_as(Principal.role(lambda_role("redrive"), list)),
        pytest.raises(ParameterError, match="AccessDeniedException"),
    ):
        get_text("/jitrunners/config/templates", max_age=0)


def _sized_fleet(world: World, families: list[str], template: str) -> dict[str, Any]:
    """An instant fleet by attribute-based selection (a sized job), as scale-up sends it."""
    requirements = {
        "VCpuCount": {"Min": 4, "Max": 4},
        "MemoryMiB": {"Min": 16384, "Max": 16384},
        "AllowedInstanceTypes": [f"{f}.*" for f in families],
        "BurstablePerformance": "excluded",
    }
    return world.client("ec2").create_fleet(
        Type="instant",
        LaunchTemplateConfigs=[
            {
                "LaunchTemplateSpecification": {
                    "LaunchTemplateName": template,
                    "Version": "$Default",
                },
                "Overrides": [{"InstanceRequirements": requirements, "SubnetId": world.subnet}],
            }
        ],
        TargetCapacitySpecification={
            "TotalTargetCapacity": 1,
            "DefaultTargetCapacityType": "spot",
            "SpotTargetCapacity": 1,
        },
    )


SIZED_TYPES = {
    "Sid": "OnlyTheseFamilies",
    "Effect": "Deny",
    "Action": ["ec2:CreateFleet", "ec2:RunInstances"],
    "Resource": f"{EC2}:instance/*",
    "Condition": {"StringNotLike": {"ec2:InstanceType": ["m7i.*"]}},
}


def test_a_fleet_by_instance_requirements_is_authorized_as_each_type_it_may_launch(
    world: World,
) -> None:
    world.policies = [policy(*SCALE_UP_LAUNCH, SIZED_TYPES)]
    template = world.launch_template("jitrunners-sized", volume_tags=True)
    response = _sized_fleet(world, ["m7i"], template)
    [group] = response["Instances"]
    assert group["InstanceType"] == "m7i.xlarge"
    types = {
        check.context.get("ec2:InstanceType")
        for _, check, _ in world.enforcer.decisions
        if check.resource == f"{EC2}:instance/*" and check.action != "ec2:CreateTags"
    }
    assert types == {"m7i.xlarge"}

    with pytest.raises(ClientError) as exc:
        _sized_fleet(world, ["m7i", "m7a"], template)  # m7a.xlarge also meets it: not allowed
    assert error(exc)[0] == "UnauthorizedOperation"


def test_listing_types_by_requirements_is_authorized_on_star(world: World) -> None:
    world.policies = [policy()]
    with pytest.raises(ClientError):
        world.client("ec2").get_instance_types_from_instance_requirements(
            ArchitectureTypes=["x86_64"],
            VirtualizationTypes=["hvm"],
            InstanceRequirements={"VCpuCount": {"Min": 2}, "MemoryMiB": {"Min": 0}},
        )
    world.policies = [
        policy(
            {
                "Effect": "Allow",
                "Action": "ec2:GetInstanceTypesFromInstanceRequirements",
                "Resource": "*",
            }
        )
    ]
    found = world.client("ec2").get_instance_types_from_instance_requirements(
        ArchitectureTypes=["arm64"],
        VirtualizationTypes=["hvm"],
        InstanceRequirements={
            "VCpuCount": {"Min": 2, "Max": 2},
            "MemoryMiB": {"Min": 8192, "Max": 8192},
            "AllowedInstanceTypes": ["m7g.*"],
        },
    )
    assert [t["InstanceType"] for t in found["InstanceTypes"]] == ["m7g.large"]


def test_scale_up_reads_job_ran_claims_and_no_other_item_of_the_table(world: World) -> None:
    """The module's scale-up role (rendered by terraform) as the principal: one BatchGetItem of
    the webhook's job-ran claims passes; a batch that names any other item (a delivery id, a
    launch claim) is refused whole, as AWS evaluates dynamodb:LeadingKeys for BatchGetItem."""
    from datetime import UTC, datetime

    from jitrunners.aws import deliveries
    from tests.deploy import rendered

    table = world_support.create_deliveries_table(world.raw("dynamodb"))
    now = datetime.now(UTC)
    ran = deliveries.ran_key("acme/app", 7, 1, "in_progress")
    assert deliveries.claim(table, ran, now=now, ttl_s=60, runner="i-0123456789abcdef0-8-1")
    world.policies = rendered.documents().function_identity_policies("scale-up")
    dynamodb = world.client("dynamodb")

    def read(*keys: str) -> Any:
        return dynamodb.batch_get_item(
            RequestItems={table: {"Keys": [{"delivery_id": {"S": k}} for k in keys]}}
        )

    assert read(ran)["Responses"][table][0]["runner"]["S"] == "i-0123456789abcdef0-8-1"
    for other in ("dlv-7", "launch:acme/app:7:1:1", "spot-breaker#m7i.large"):
        with pytest.raises(ClientError) as exc:
            read(ran, other)
        assert error(exc)[0] == "AccessDeniedException"


def test_a_transaction_of_launch_claims_is_authorized_as_one_put_per_item(world: World) -> None:
    """TransactWriteItems is no IAM action: each Put is authorized as dynamodb:PutItem on its
    table with its item's partition key as dynamodb:LeadingKeys. The module's scale-up role
    (rendered by terraform) claims a batch's launches; a policy without PutItem, or whose
    LeadingKeys condition one item's key fails, refuses the whole transaction and writes none."""
    from datetime import UTC, datetime

    from jitrunners.aws import deliveries
    from tests.deploy import rendered

    table = world_support.create_deliveries_table(world.raw("dynamodb"))
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
    dynamodb = world.client("dynamodb")
    now = int(datetime.now(UTC).timestamp())

    def claim(*keys: str) -> Any:
        return dynamodb.transact_write_items(
            TransactItems=[
                {"Put": deliveries._launch_put(table, key, "dlv-1", now, 600)} for key in keys
            ]
        )

    def stored() -> set[str]:
        items = world.raw("dynamodb").scan(TableName=table)["Items"]
        return {item["delivery_id"]["S"] for item in items}

    world.policies = rendered.documents().function_identity_policies("scale-up")
    claim("launch:acme/app:7:1:1", "launch:acme/app:8:1:1")
    assert stored() == {"launch:acme/app:7:1:1", "launch:acme/app:8:1:1"}

    world.policies = [
        policy({"Effect": "Allow", "Action": ["dynamodb:DeleteItem"], "Resource": arn})
    ]
    with pytest.raises(ClientError) as exc:
        claim("launch:acme/app:9:1:1", "launch:acme/app:10:1:1")
    code, message, status = error(exc)
    assert (code, status) == ("AccessDeniedException", 400)
    assert f"dynamodb:PutItem on resource: {arn}" in message

    world.policies = [
        policy(
            {
                "Effect": "Allow",
                "Action": "dynamodb:PutItem",
                "Resource": arn,
                "Condition": {
                    "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["launch:*"]},
                    "StringEquals": {"dynamodb:EnclosingOperation": "TransactWriteItems"},
                },
            }
        )
    ]
    claim("launch:acme/app:9:1:1", "launch:acme/app:10:1:1")
    with pytest.raises(ClientError) as exc:
        claim("launch:acme/app:11:1:1", "dlv-7")  # one item outside the condition
    assert error(exc)[0] == "AccessDeniedException"
    assert "launch:acme/app:11:1:1" not in stored()
