"""The request authorizer: each call of a hooked boto3 client is authorized as AWS would authorize
it, against its principal's IAM policies (and the resource's policy, the KMS key's policy), before
it reaches moto. A denied call fails with the error AWS answers, parsed by botocore from the HTTP
response AWS would send, so retries and error handling see an ordinary service error.

Moto's own IAM enforcement ignores conditions; this one evaluates them (devstack/iam/evaluator.py).
Every operation needs a rule in RULES that lists the authorization requests AWS makes for it:
an operation without one fails loudly (UnmodelledOperation), it never passes unchecked.

Sources for what each operation authorizes (resources and condition keys):
- Service Authorization Reference: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html,
  .../list_awssystemsmanager.html, .../list_amazonsqs.html, .../list_awskeymanagementservice.html
- EC2 launches: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ExamplePolicies_EC2.html
  ("Launch instances (RunInstances)", "Launch templates") and
  https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html
  (tags on create).
  CreateFleet is authorized on the launch resources too (ec2:CreateFleet on launch-template/* in
  https://github.com/kubernetes-sigs/karpenter/issues/2813), besides ec2:RunInstances, which an
  instant fleet performs with the caller's permissions.
- Parameter Store and KMS: https://docs.aws.amazon.com/kms/latest/developerguide/services-parameter-store.html
  (encryption context PARAMETER_ARN, kms:ViaService ssm.<region>.amazonaws.com).
- Lambda (the budget guard's kill switch): .../list_awslambda.html (function ARN for concurrency,
  eventSourceMapping ARN with aws:ResourceTag for UpdateEventSourceMapping, no resource for
  ListEventSourceMappings).
- Access denied messages: https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from botocore import parsers

from devstack.iam.evaluator import (
    ContextValue,
    Decision,
    Request,
    ResourcePolicyMode,
    Result,
    evaluate,
)

Policies = Sequence[Mapping[str, Any]]


class UnmodelledOperation(RuntimeError):
    """An operation the authorizer has no rule for: add its rule to RULES, never let it pass."""


class NoPrincipal(RuntimeError):
    """A call on an enforced client with no principal bound (outside any Lambda invocation)."""


# ----------------------------------------------------------------------------------- principal
@dataclass(frozen=True)
class Principal:
    """Who calls: the session ARN AWS names in errors, the role behind it (aws:PrincipalArn), its
    identity policies (a callable, read at each call, so that policies can be swapped), and the
    keys its credentials add to every request (ec2:SourceInstanceARN for an instance profile)."""

    arn: str
    role_arn: str
    policies: Callable[[], Policies]
    context: Mapping[str, ContextValue] = field(default_factory=dict)

    @classmethod
    def role(
        cls,
        role_arn: str,
        policies: Callable[[], Policies],
        *,
        session: str = "devstack",
        context: Mapping[str, ContextValue] | None = None,
    ) -> Principal:
        """A session of a role: arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION."""
        partition, account, name = _role_parts(role_arn)
        arn = f"arn:{partition}:sts::{account}:assumed-role/{name}/{session}"
        return cls(arn, role_arn, policies, dict(context or {}))

    @classmethod
    def instance(
        cls, role_arn: str, policies: Callable[[], Policies], instance_arn: str
    ) -> Principal:
        """An instance-profile session: the session name is the instance id and IAM adds
        ec2:SourceInstanceARN (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-ec2-source-instance-arn)
        and ec2:RoleDelivery ("2.0" with IMDSv2, which our launch templates require)."""
        context = {"ec2:SourceInstanceARN": instance_arn, "ec2:RoleDelivery": "2.0"}
        return cls.role(
            role_arn, policies, session=instance_arn.rsplit("/", 1)[-1], context=context
        )

    @property
    def account(self) -> str:
        return _role_parts(self.role_arn)[1]


def _role_parts(role_arn: str) -> tuple[str, str, str]:
    match = re.fullmatch(r"arn:([^:]+):iam::(\d+):role/(?:.*/)?([^/]+)", role_arn)
    if not match:
        raise ValueError(f"not a role ARN: {role_arn!r}")
    return match.group(1), match.group(2), match.group(3)


# ----------------------------------------------------------------------------------- lookup
@dataclass(frozen=True)
class InstanceInfo:
    arn: str
    tags: Mapping[str, str]
    instance_profile_arn: str | None
    instance_type: str | None
    state: str | None = None  # not an IAM key: says whether a refusal raced the instance's end


@dataclass(frozen=True)
class LaunchTemplateInfo:
    id: str
    arn: str
    tags: Mapping[str, str]
    data: Mapping[str, Any]  # LaunchTemplateData of the version asked for


@dataclass(frozen=True)
class ParameterInfo:
    arn: str
    tags: Mapping[str, str]
    type: str
    key_id: str | None


@dataclass(frozen=True)
class KeyInfo:
    arn: str
    policy: Mapping[str, Any]
    aws_managed: bool  # alias/aws/ssm and friends: their policies admit the account via the service


@dataclass(frozen=True)
class QueueInfo:
    arn: str
    kms_key_id: str | None
    policy: Mapping[str, Any] | None


@dataclass(frozen=True)
class InstanceProfileInfo:
    arn: str
    role_arns: tuple[str, ...]


class Lookup(Protocol):
    """Resource state the authorizer reads (tags, policies); None when the resource is unknown."""

    def instance(self, instance_id: str) -> InstanceInfo | None: ...
    def launch_template(
        self, *, id: str | None, name: str | None, version: str | None
    ) -> LaunchTemplateInfo | None: ...
    def parameter(self, name: str) -> ParameterInfo | None: ...
    def key(self, key_id: str) -> KeyInfo | None: ...
    def queue(self, url: str) -> QueueInfo | None: ...
    def ec2_tags(self, resource_id: str) -> Mapping[str, str]: ...
    def instance_profile(self, name_or_arn: str) -> InstanceProfileInfo | None: ...
    def lambda_tags(self, arn: str) -> Mapping[str, str]: ...
    def table_hash_key(self, table_arn: str) -> str | None: ...


def _tag_dict(tags: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in tags or ()}


class MotoLookup:
    """Lookup through boto3 clients to moto that are not themselves enforced."""

    def __init__(self, client: Callable[[str], Any], region: str, account: str) -> None:
        self._client = client
        self.region = region
        self.account = account

    def _ignore_missing(self, call: Callable[[], Any]) -> Any:
        from botocore.exceptions import ClientError

        try:
            return call()
        except ClientError:
            return None

    def instance(self, instance_id: str) -> InstanceInfo | None:
        found = self._ignore_missing(
            lambda: self._client("ec2").describe_instances(InstanceIds=[instance_id])
        )
        for reservation in (found or {}).get("Reservations", []):
            for data in reservation.get("Instances", []):
                return InstanceInfo(
                    arn=f"arn:aws:ec2:{self.region}:{self.account}:instance/{instance_id}",
                    tags=_tag_dict(data.get("Tags")),
                    instance_profile_arn=(data.get("IamInstanceProfile") or {}).get("Arn"),
                    instance_type=data.get("InstanceType"),
                    state=(data.get("State") or {}).get("Name"),
                )
        return None

    def launch_template(
        self, *, id: str | None, name: str | None, version: str | None
    ) -> LaunchTemplateInfo | None:
        ec2 = self._client("ec2")
        selector = {"LaunchTemplateIds": [id]} if id else {"LaunchTemplateNames": [name]}
        found = self._ignore_missing(lambda: ec2.describe_launch_templates(**selector))
        templates = (found or {}).get("LaunchTemplates", [])
        if not templates:
            return None
        template = templates[0]
        lt_id = template["LaunchTemplateId"]
        versions = self._ignore_missing(
            lambda: ec2.describe_launch_template_versions(
                LaunchTemplateId=lt_id, Versions=[version or "$Default"]
            )
        )
        data = ((versions or {}).get("LaunchTemplateVersions") or [{}])[0]
        return LaunchTemplateInfo(
            id=lt_id,
            arn=f"arn:aws:ec2:{self.region}:{self.account}:launch-template/{lt_id}",
            tags=_tag_dict(template.get("Tags")),
            data=data.get("LaunchTemplateData") or {},
        )

    def parameter(self, name: str) -> ParameterInfo | None:
        ssm = self._client("ssm")
        found = self._ignore_missing(
            lambda: ssm.describe_parameters(
                ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}]
            )
        )
        items = (found or {}).get("Parameters", [])
        if not items:
            return None
        tags = self._ignore_missing(
            lambda: ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)
        )
        return ParameterInfo(
            arn=parameter_arn(self.region, self.account, name),
            tags=_tag_dict((tags or {}).get("TagList")),
            type=str(items[0].get("Type", "String")),
            key_id=items[0].get("KeyId"),
        )

    def key(self, key_id: str) -> KeyInfo | None:
        kms = self._client("kms")
        found = self._ignore_missing(lambda: kms.describe_key(KeyId=key_id))
        if not found:
            return None
        metadata = found["KeyMetadata"]
        policy = self._ignore_missing(
            lambda: kms.get_key_policy(KeyId=metadata["KeyId"], PolicyName="default")
        )
        return KeyInfo(
            arn=metadata["Arn"],
            policy=json.loads((policy or {}).get("Policy") or '{"Statement": []}'),
            aws_managed=metadata.get("KeyManager") == "AWS",
        )

    def queue(self, url: str) -> QueueInfo | None:
        found = self._ignore_missing(
            lambda: self._client("sqs").get_queue_attributes(
                QueueUrl=url, AttributeNames=["QueueArn", "KmsMasterKeyId", "Policy"]
            )
        )
        if not found:
            return None
        attributes = found.get("Attributes", {})
        policy = attributes.get("Policy")
        return QueueInfo(
            arn=attributes["QueueArn"],
            kms_key_id=attributes.get("KmsMasterKeyId") or None,
            policy=json.loads(policy) if policy else None,
        )

    def ec2_tags(self, resource_id: str) -> Mapping[str, str]:
        found = self._client("ec2").describe_tags(
            Filters=[{"Name": "resource-id", "Values": [resource_id]}]
        )
        return {t["Key"]: t.get("Value", "") for t in found.get("Tags", [])}

    def lambda_tags(self, arn: str) -> Mapping[str, str]:
        """Tags of a Lambda function or event source mapping ({} when it does not exist)."""
        found = self._ignore_missing(lambda: self._client("lambda").list_tags(Resource=arn))
        return dict((found or {}).get("Tags") or {})

    def table_hash_key(self, table_arn: str) -> str | None:
        """The name of a DynamoDB table's partition key (None when the table does not exist)."""
        found = self._ignore_missing(
            lambda: self._client("dynamodb").describe_table(TableName=table_arn.rsplit("/", 1)[-1])
        )
        schema = (found or {}).get("Table", {}).get("KeySchema", [])
        return next((k["AttributeName"] for k in schema if k["KeyType"] == "HASH"), None)

    def instance_profile(self, name_or_arn: str) -> InstanceProfileInfo | None:
        name = name_or_arn.rsplit("/", 1)[-1]
        found = self._ignore_missing(
            lambda: self._client("iam").get_instance_profile(InstanceProfileName=name)
        )
        if not found:
            return None
        profile = found["InstanceProfile"]
        return InstanceProfileInfo(
            profile["Arn"], tuple(role["Arn"] for role in profile.get("Roles", []))
        )


def parameter_arn(region: str, account: str, name: str) -> str:
    """A parameter's ARN: "/a/b" and "a" become "parameter/a/b" and "parameter/a"."""
    if name.startswith("arn:"):
        return name
    return f"arn:aws:ssm:{region}:{account}:parameter/{name.lstrip('/')}"


class BackendLookup(MotoLookup):
    """MotoLookup that reads EC2's instances and tags, and SSM's parameters and their tags, from
    moto's backends of this process instead of asking moto through boto3: the same answers
    (tests/integration/test_iam_enforce.py compares them) without a DescribeInstances, or a
    DescribeParameters and a ListTagsForResource, serialised, parsed and answered for each call
    the layer authorizes (a tenth of a burst's CPU each). For a moto in this process only."""

    def _ec2(self) -> Any:
        from moto.ec2.models import ec2_backends

        return ec2_backends[self.account][self.region]

    def instance(self, instance_id: str) -> InstanceInfo | None:
        backend = self._ec2()
        found = backend.get_instance_by_id(instance_id)
        if found is None:
            return None
        profile = getattr(found, "iam_instance_profile", None)
        return InstanceInfo(
            arn=f"arn:aws:ec2:{self.region}:{self.account}:instance/{instance_id}",
            tags=dict(backend.tags.get(instance_id) or {}),
            instance_profile_arn=(profile or {}).get("Arn") if isinstance(profile, dict) else None,
            instance_type=getattr(found, "instance_type", None),
            state=getattr(found, "state", None),
        )

    def ec2_tags(self, resource_id: str) -> Mapping[str, str]:
        return dict(self._ec2().tags.get(resource_id) or {})

    def parameter(self, name: str) -> ParameterInfo | None:
        """As DescribeParameters (its Name filter, with or without the leading slash) and
        ListTagsForResource answer, without the two calls: every PutParameter, GetParameter and
        DeleteParameters name the layer authorizes read them, and moto's DescribeParameters
        passes over every parameter (thousands in a burst)."""
        from moto.ssm.models import ssm_backends

        backend = ssm_backends[self.account][self.region]
        stored = backend._parameters
        bare = name.lstrip("/")
        for key in dict.fromkeys(stored.normalize_name(n) for n in (name, "/" + bare, bare)):
            versions = stored.get(key) if key else None
            if versions:
                found = versions[-1]
                break
        else:
            return None
        # ListTagsForResource finds the parameter by the name as given (normalized), not as
        # the Name filter does: "a/b" is described as "/a/b" but has no tags of its own.
        tagged = dict.get(stored, stored.normalize_name(name))
        tags = (backend._resource_tags.get("Parameter", {}).get(found.name) if tagged else {}) or {}
        return ParameterInfo(
            arn=parameter_arn(self.region, self.account, name),
            tags=dict(tags),
            type=str(found.parameter_type or "String"),
            key_id=found.keyid or None,
        )


# ----------------------------------------------------------------------------------- checks
ErrorStyle = Literal["service", "kms-via-ssm", "kms-via-sqs"]


@dataclass(frozen=True)
class Check:
    """One authorization request AWS makes while serving a call."""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    resource_policy: Mapping[str, Any] | None = None
    mode: ResourcePolicyMode = "standard"
    style: ErrorStyle = "service"


@dataclass
class Call:
    """What a rule sees: the operation's parameters and where to look things up."""

    service: str
    operation: str
    params: Mapping[str, Any]
    region: str
    account: str
    lookup: Lookup

    def ec2_arn(self, kind: str, resource_id: str) -> str:
        if kind == "image":
            return f"arn:aws:ec2:{self.region}::image/{resource_id}"
        return f"arn:aws:ec2:{self.region}:{self.account}:{kind}/{resource_id}"

    def parameter_arn(self, name: str) -> str:
        return parameter_arn(self.region, self.account, name)


Rule = Callable[[Call], list[Check]]


def _tags_context(prefixes: Sequence[str], tags: Mapping[str, str]) -> dict[str, ContextValue]:
    return {f"{prefix}/{key}": value for prefix in prefixes for key, value in tags.items()}


def _request_tags(tags: Mapping[str, str]) -> dict[str, ContextValue]:
    context: dict[str, ContextValue] = _tags_context(["aws:RequestTag"], tags)
    if tags:
        context["aws:TagKeys"] = list(tags)
    return context


# ----------------------------------------------------------------------------------- SQS
def _queue_arn_from_url(call: Call, url: str) -> str:
    # https://sqs.<region>.amazonaws.com/<account>/<name>, or moto's http://host:port/<account>/<name>
    account, name = url.rstrip("/").split("/")[-2:]
    return f"arn:aws:sqs:{call.region}:{account}:{name}"


def _sqs(action: str, kms_action: str | None = None) -> Rule:
    def rule(call: Call) -> list[Check]:
        url = str(call.params["QueueUrl"])
        queue = call.lookup.queue(url)
        arn = queue.arn if queue else _queue_arn_from_url(call, url)
        checks = [Check(f"sqs:{action}", arn, resource_policy=queue.policy if queue else None)]
        if kms_action and queue and queue.kms_key_id:
            # SSE-KMS queues: the caller needs the key for sending and receiving
            # (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html)
            checks += _kms_via(call, "sqs", kms_action, queue.kms_key_id, {"aws:sqs:arn": arn})
        return checks

    return rule


def _sqs_get_queue_url(call: Call) -> list[Check]:
    account = str(call.params.get("QueueOwnerAWSAccountId") or call.account)
    return [
        Check("sqs:GetQueueUrl", f"arn:aws:sqs:{call.region}:{account}:{call.params['QueueName']}")
    ]


# ----------------------------------------------------------------------------------- KMS
def _kms_via(
    call: Call, service: str, action: str, key_id: str, encryption_context: Mapping[str, str]
) -> list[Check]:
    """kms:<action> that a service performs with the caller's credentials (forward access)."""
    key = call.lookup.key(key_id)
    if key is None or key.aws_managed:
        # An AWS managed key (alias/aws/ssm, alias/aws/sqs) admits every principal of the
        # account through its service; an unknown key is the service's own error to report.
        return []
    context: dict[str, ContextValue] = {
        "kms:ViaService": f"{service}.{call.region}.amazonaws.com",
        "kms:CallerAccount": call.account,
        "aws:ViaAWSService": "true",
        "aws:CalledVia": [f"{service}.amazonaws.com"],
        "kms:EncryptionContextKeys": list(encryption_context),
    }
    context.update({f"kms:EncryptionContext:{k}": v for k, v in encryption_context.items()})
    style: ErrorStyle = "kms-via-ssm" if service == "ssm" else "kms-via-sqs"
    return [Check(f"kms:{action}", key.arn, context, key.policy, "kms", style)]


def _kms(action: str) -> Rule:
    def rule(call: Call) -> list[Check]:
        key_id = call.params.get("KeyId")
        if not key_id:
            raise UnmodelledOperation(
                f"kms.{call.operation} without KeyId: the authorizer cannot tell which key"
            )
        key = call.lookup.key(str(key_id))
        if key is None:
            return []  # KMS answers NotFoundException
        encryption = call.params.get("EncryptionContext") or {}
        context: dict[str, ContextValue] = {
            "kms:CallerAccount": call.account,
            "kms:EncryptionContextKeys": list(encryption),
        }
        context.update({f"kms:EncryptionContext:{k}": v for k, v in encryption.items()})
        return [Check(f"kms:{action}", key.arn, context, key.policy, "kms")]

    return rule


# ----------------------------------------------------------------------------------- SSM
def _parameter_context(info: ParameterInfo | None) -> dict[str, ContextValue]:
    # The Service Authorization Reference lists aws:ResourceTag/${TagKey} for the parameter
    # resource (DESIGN 3b): no ssm:resourceTag/... is supplied.
    return _tags_context(["aws:ResourceTag"], info.tags) if info else {}


def _read_parameters(action: str) -> Rule:
    def rule(call: Call) -> list[Check]:
        names = call.params.get("Names") or [call.params["Name"]]
        checks: list[Check] = []
        for name in names:
            info = call.lookup.parameter(str(name))
            arn = info.arn if info else call.parameter_arn(str(name))
            checks.append(Check(f"ssm:{action}", arn, _parameter_context(info)))
            if call.params.get("WithDecryption") and info and info.type == "SecureString":
                checks += _kms_via(
                    call, "ssm", "Decrypt", info.key_id or "alias/aws/ssm", {"PARAMETER_ARN": arn}
                )
        return checks

    return rule


def _get_parameters_by_path(call: Call) -> list[Check]:
    path = str(call.params["Path"]).rstrip("/") or "/"
    return [Check("ssm:GetParametersByPath", call.parameter_arn(path))]


def _put_parameter(call: Call) -> list[Check]:
    name = str(call.params["Name"])
    info = call.lookup.parameter(name)
    arn = info.arn if info else call.parameter_arn(name)
    tags = _tag_dict(call.params.get("Tags"))
    context = {**_parameter_context(info), **_request_tags(tags)}
    checks = [Check("ssm:PutParameter", arn, context)]
    if tags:
        # Tags on create also need ssm:AddTagsToResource
        # (https://docs.aws.amazon.com/systems-manager/latest/userguide/sysman-paramstore-access.html)
        checks.append(Check("ssm:AddTagsToResource", arn, context))
    if call.params.get("Type") == "SecureString" or (info and info.type == "SecureString"):
        # Standard parameters are encrypted with kms:Encrypt, advanced ones with a data key.
        action = "GenerateDataKey" if call.params.get("Tier") == "Advanced" else "Encrypt"
        key_id = call.params.get("KeyId") or (info.key_id if info else None) or "alias/aws/ssm"
        checks += _kms_via(call, "ssm", action, str(key_id), {"PARAMETER_ARN": arn})
    return checks


def _delete_parameters(action: str) -> Rule:
    def rule(call: Call) -> list[Check]:
        names = call.params.get("Names") or [call.params["Name"]]
        checks = []
        for name in names:
            info = call.lookup.parameter(str(name))
            arn = info.arn if info else call.parameter_arn(str(name))
            checks.append(Check(f"ssm:{action}", arn, _parameter_context(info)))
        return checks

    return rule


def _add_tags_to_resource(call: Call) -> list[Check]:
    if call.params.get("ResourceType") != "Parameter":
        raise UnmodelledOperation(
            f"ssm.AddTagsToResource on {call.params.get('ResourceType')}: only Parameter is"
            " modelled"
        )
    name = str(call.params["ResourceId"])
    info = call.lookup.parameter(name)
    arn = info.arn if info else call.parameter_arn(name)
    context = {**_parameter_context(info), **_request_tags(_tag_dict(call.params.get("Tags")))}
    return [Check("ssm:AddTagsToResource", arn, context)]


def _document_arn(call: Call, name: str) -> str:
    if name.startswith("arn:"):
        return name
    if name.startswith(("AWS-", "Amazon")):
        return f"arn:aws:ssm:{call.region}::document/{name}"  # AWS-owned: no account
    return f"arn:aws:ssm:{call.region}:{call.account}:document/{name}"


def _send_command(call: Call) -> list[Check]:
    if call.params.get("Targets") or call.params.get("ServiceRoleArn"):
        raise UnmodelledOperation("ssm.SendCommand with Targets or ServiceRoleArn is not modelled")
    checks = [Check("ssm:SendCommand", _document_arn(call, str(call.params["DocumentName"])))]
    for instance_id in call.params.get("InstanceIds") or []:
        info = call.lookup.instance(str(instance_id))
        if info is None:
            continue  # SSM answers InvalidInstanceId
        context = _tags_context(["aws:ResourceTag"], info.tags)
        if info.instance_profile_arn:
            # Not in the SSM catalogue for instances as far as we could check (see the report);
            # supplied so that a policy can pin the runner profile.
            context["ec2:InstanceProfile"] = info.instance_profile_arn
        checks.append(Check("ssm:SendCommand", info.arn, context))
    return checks


def _unscoped(action: str) -> Rule:
    """Actions without resource-level permissions: authorized on "*"."""
    return lambda call: [Check(action, "*")]


# ----------------------------------------------------------------------------------- EC2
_EC2_KINDS = {
    "i": "instance",
    "vol": "volume",
    "eni": "network-interface",
    "sg": "security-group",
    "subnet": "subnet",
    "vpc": "vpc",
    "ami": "image",
    "lt": "launch-template",
    "fleet": "fleet",
    "sir": "spot-instances-request",
    "snap": "snapshot",
}


def _ec2_kind(resource_id: str) -> str:
    kind = _EC2_KINDS.get(resource_id.split("-", 1)[0])
    if kind is None:
        raise UnmodelledOperation(f"ec2 resource {resource_id!r}: its ARN type is not modelled")
    return kind


def _instance_context(call: Call, info: InstanceInfo) -> dict[str, ContextValue]:
    context = _tags_context(["aws:ResourceTag", "ec2:ResourceTag"], info.tags)
    context["ec2:Region"] = call.region
    if info.instance_profile_arn:
        context["ec2:InstanceProfile"] = info.instance_profile_arn
    if info.instance_type:
        context["ec2:InstanceType"] = info.instance_type
    return context


def _on_instances(action: str) -> Rule:
    """An EC2 action on the instances its InstanceIds name (Terminate, Start, Stop)."""

    def rule(call: Call) -> list[Check]:
        checks = []
        for instance_id in call.params.get("InstanceIds") or []:
            info = call.lookup.instance(str(instance_id))
            if info is not None:  # unknown ids: EC2 answers InvalidInstanceID.NotFound
                checks.append(Check(action, info.arn, _instance_context(call, info)))
        return checks

    return rule


_terminate_instances = _on_instances("ec2:TerminateInstances")


def _create_tags(call: Call) -> list[Check]:
    request = _request_tags(_tag_dict(call.params.get("Tags")))
    checks = []
    for resource_id in map(str, call.params.get("Resources") or []):
        kind = _ec2_kind(resource_id)
        if kind == "instance":
            info = call.lookup.instance(resource_id)
            if info is None:
                continue
            context = _instance_context(call, info)
        else:
            tags = call.lookup.ec2_tags(resource_id)
            context = {
                **_tags_context(["aws:ResourceTag", "ec2:ResourceTag"], tags),
                "ec2:Region": call.region,
            }
        checks.append(
            Check("ec2:CreateTags", call.ec2_arn(kind, resource_id), {**context, **request})
        )
    return checks


@dataclass
class _Launch:
    """One launch's parameters: the call's (or a fleet override's) over the launch template's.
    `from_template` names the parameters the template supplied (ec2:IsLaunchTemplateResource)."""

    template: LaunchTemplateInfo | None
    image_id: str | None = None
    instance_type: str | None = None
    subnet_id: str | None = None
    security_group_ids: list[str] = field(default_factory=list)
    key_name: str | None = None
    instance_profile: str | None = None  # name or ARN
    volumes: list[Mapping[str, Any]] = field(default_factory=list)
    spot: bool = False
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # resource type -> tags
    from_template: set[str] = field(default_factory=set)

    def take(self, name: str, call_value: Any, template_value: Any) -> Any:
        if call_value:
            return call_value
        if template_value:
            self.from_template.add(name)
        return template_value


def _launch(
    call: Call, spec: Mapping[str, Any] | None, given: Mapping[str, Any], tag_specs: Any
) -> _Launch:
    template = None
    if spec:
        template = call.lookup.launch_template(
            id=spec.get("LaunchTemplateId"),
            name=spec.get("LaunchTemplateName"),
            version=spec.get("Version"),
        )
        if template is None:
            raise _LetServiceAnswer  # EC2 answers InvalidLaunchTemplateName/Id.NotFound
    data: Mapping[str, Any] = template.data if template else {}
    launch = _Launch(template)
    interfaces = data.get("NetworkInterfaces") or [{}]
    launch.image_id = launch.take("image", given.get("ImageId"), data.get("ImageId"))
    launch.instance_type = launch.take(
        "instance", given.get("InstanceType"), data.get("InstanceType")
    )
    launch.subnet_id = launch.take("subnet", given.get("SubnetId"), interfaces[0].get("SubnetId"))
    launch.security_group_ids = (
        launch.take(
            "security-group",
            given.get("SecurityGroupIds"),
            data.get("SecurityGroupIds") or interfaces[0].get("Groups"),
        )
        or []
    )
    launch.key_name = launch.take("key-pair", given.get("KeyName"), data.get("KeyName"))
    profile = given.get("IamInstanceProfile") or {}
    template_profile = data.get("IamInstanceProfile") or {}
    launch.instance_profile = launch.take(
        "instance-profile",
        profile.get("Arn") or profile.get("Name"),
        template_profile.get("Arn") or template_profile.get("Name"),
    )
    launch.volumes = [
        m.get("Ebs") or {}
        for m in launch.take(
            "volume", given.get("BlockDeviceMappings"), data.get("BlockDeviceMappings")
        )
        or []
    ]
    if not given.get("BlockDeviceMappings"):
        launch.from_template.add("volume")  # the template's, or the image's own root volume
    market = given.get("InstanceMarketOptions") or data.get("InstanceMarketOptions") or {}
    launch.spot = launch.spot or market.get("MarketType") == "spot"
    # The template's tag specifications, then the call's (the call's win on a clash).
    for source in (data.get("TagSpecifications") or [], tag_specs or []):
        for spec_item in source:
            kind = str(spec_item.get("ResourceType"))
            launch.tags.setdefault(kind, {}).update(_tag_dict(spec_item.get("Tags")))
    return launch


class _LetServiceAnswer(Exception):
    """The call names something that does not exist: no check, the service's own error."""


_LAUNCH_ORDER = (
    "launch-template",
    "instance",
    "volume",
    "network-interface",
    "subnet",
    "security-group",
    "image",
    "key-pair",
    "spot-instances-request",
)


def _launch_checks(
    call: Call, actions: Sequence[str], launch: _Launch, create_action: str
) -> list[Check]:
    base: dict[str, ContextValue] = {"ec2:Region": call.region}
    if launch.template:
        base["ec2:LaunchTemplate"] = launch.template.arn

    def from_template(name: str) -> dict[str, ContextValue]:
        if not launch.template:
            return {}
        return {"ec2:IsLaunchTemplateResource": str(name in launch.from_template).lower()}

    profile_arn = None
    profile = None
    if launch.instance_profile:
        profile = call.lookup.instance_profile(launch.instance_profile)
        if profile is None:
            raise _LetServiceAnswer  # EC2 answers InvalidParameterValue (iamInstanceProfile)
        profile_arn = profile.arn
    resources: list[tuple[str, str, dict[str, ContextValue]]] = []
    if launch.template:
        resources.append(
            (
                "launch-template",
                launch.template.arn,
                {
                    **_tags_context(["aws:ResourceTag", "ec2:ResourceTag"], launch.template.tags),
                    **from_template("launch-template"),
                },
            )
        )
    instance: dict[str, ContextValue] = {
        **_request_tags(launch.tags.get("instance", {})),
        **from_template("instance"),
        "ec2:InstanceMarketType": "spot" if launch.spot else "on-demand",
    }
    if launch.instance_type:
        instance["ec2:InstanceType"] = launch.instance_type
    if profile_arn:
        instance["ec2:InstanceProfile"] = profile_arn
    resources.append(("instance", call.ec2_arn("instance", "*"), instance))
    volume: dict[str, ContextValue] = {
        **_request_tags(launch.tags.get("volume", {})),
        **from_template("volume"),
    }
    if launch.volumes:
        ebs = launch.volumes[0]
        for key, name in (
            ("VolumeType", "ec2:VolumeType"),
            ("VolumeSize", "ec2:VolumeSize"),
            ("Encrypted", "ec2:Encrypted"),
        ):
            if key in ebs:
                volume[name] = (
                    str(ebs[key]).lower() if isinstance(ebs[key], bool) else str(ebs[key])
                )
    resources.append(("volume", call.ec2_arn("volume", "*"), volume))
    interface: dict[str, ContextValue] = {
        **_request_tags(launch.tags.get("network-interface", {})),
        **from_template("subnet"),
    }
    if launch.subnet_id:
        interface["ec2:Subnet"] = call.ec2_arn("subnet", launch.subnet_id)
    resources.append(("network-interface", call.ec2_arn("network-interface", "*"), interface))
    if launch.subnet_id:
        tags = call.lookup.ec2_tags(launch.subnet_id)
        resources.append(
            (
                "subnet",
                call.ec2_arn("subnet", launch.subnet_id),
                {
                    **_tags_context(["aws:ResourceTag", "ec2:ResourceTag"], tags),
                    **from_template("subnet"),
                },
            )
        )
    for group in launch.security_group_ids:
        tags = call.lookup.ec2_tags(group)
        resources.append(
            (
                "security-group",
                call.ec2_arn("security-group", group),
                {
                    **_tags_context(["aws:ResourceTag", "ec2:ResourceTag"], tags),
                    **from_template("security-group"),
                },
            )
        )
    if launch.image_id:
        resources.append(
            (
                "image",
                call.ec2_arn("image", launch.image_id),
                {"ec2:ImageID": launch.image_id, **from_template("image")},
            )
        )
    if launch.key_name:
        resources.append(
            (
                "key-pair",
                call.ec2_arn("key-pair", launch.key_name),
                {"ec2:KeyPairName": launch.key_name, **from_template("key-pair")},
            )
        )
    # No spot-instances-request: the Service Authorization Reference lists it among neither
    # RunInstances' nor CreateFleet's resource types (tests/deploy/iam_catalogue.py checks the
    # module's policies against it), so a spot launch is authorized on the resources above.
    resources.sort(key=lambda r: _LAUNCH_ORDER.index(r[0]))
    checks = [
        Check(action, arn, {**base, **context})
        for _, arn, context in resources
        for action in actions
    ]
    if profile is not None:
        # Passing the profile's role to EC2 (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html)
        checks += [
            Check(
                "iam:PassRole",
                role,
                {
                    "iam:PassedToService": "ec2.amazonaws.com",
                    "iam:AssociatedResourceArn": call.ec2_arn("instance", "*"),
                },
            )
            for role in profile.role_arns
        ]
    # Tags on create: ec2:CreateTags on each resource tagged at creation, with ec2:CreateAction.
    for kind in ("instance", "volume", "network-interface"):
        tags = launch.tags.get(kind)
        if tags:
            checks.append(
                Check(
                    "ec2:CreateTags",
                    call.ec2_arn(kind, "*"),
                    {**base, **_request_tags(tags), "ec2:CreateAction": create_action},
                )
            )
    return checks


def _run_instances(call: Call) -> list[Check]:
    try:
        launch = _launch(
            call,
            call.params.get("LaunchTemplate"),
            call.params,
            call.params.get("TagSpecifications"),
        )
    except _LetServiceAnswer:
        return []
    return _launch_checks(call, ["ec2:RunInstances"], launch, "RunInstances")


def _create_fleet(call: Call) -> list[Check]:
    params = call.params
    capacity = params.get("TargetCapacitySpecification") or {}
    spot = capacity.get("DefaultTargetCapacityType") == "spot"
    tag_specs = params.get("TagSpecifications") or []
    fleet_tags = {}
    for spec in tag_specs:
        if spec.get("ResourceType") == "fleet":
            fleet_tags.update(_tag_dict(spec.get("Tags")))
    fleet_context: dict[str, ContextValue] = {
        "ec2:Region": call.region,
        **_request_tags(fleet_tags),
    }
    checks = [Check("ec2:CreateFleet", call.ec2_arn("fleet", "*"), fleet_context)]
    if fleet_tags:
        checks.append(
            Check(
                "ec2:CreateTags",
                call.ec2_arn("fleet", "*"),
                {**fleet_context, "ec2:CreateAction": "CreateFleet"},
            )
        )
    for config in params.get("LaunchTemplateConfigs") or []:
        for override in _by_instance_type(config.get("Overrides") or [{}]):
            try:
                launch = _launch(
                    call, config.get("LaunchTemplateSpecification"), override, tag_specs
                )
            except _LetServiceAnswer:
                continue
            launch.spot = launch.spot or spot
            # An instant fleet launches with the caller's permissions: both actions are checked.
            checks += _launch_checks(
                call, ["ec2:CreateFleet", "ec2:RunInstances"], launch, "CreateFleet"
            )
    return _unique(checks)


def _by_instance_type(overrides: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Overrides with attribute-based selection (InstanceRequirements), as one per instance type
    EC2 may choose: each is launched, so authorized, as that type (`ec2:InstanceType`). The types
    are those the local stack's EC2 would choose (devstack/moto_fixes.py)."""
    from devstack.moto_fixes import types_for

    out: list[Mapping[str, Any]] = []
    for override in overrides:
        requirements = override.get("InstanceRequirements")
        if not requirements or override.get("InstanceType"):
            out.append(override)
            continue
        base = {k: v for k, v in override.items() if k != "InstanceRequirements"}
        out.extend(base | {"InstanceType": t} for t in types_for(requirements))
    return out


def _unique(checks: list[Check]) -> list[Check]:
    seen: set[str] = set()
    kept = []
    for check in checks:
        key = json.dumps([check.action, check.resource, dict(check.context)], sort_keys=True)
        if key not in seen:
            seen.add(key)
            kept.append(check)
    return kept


# ----------------------------------------------------------------------------------- Lambda
def _function_arn(call: Call, name: str) -> str:
    """A FunctionName parameter (name, partial or full ARN) as the unqualified function ARN the
    Service Authorization Reference lists for concurrency operations."""
    if name.startswith("arn:"):
        return ":".join(name.split(":")[:7])
    return f"arn:aws:lambda:{call.region}:{call.account}:function:{name.partition(':')[0]}"


def _lambda_function(action: str) -> Rule:
    return lambda call: [Check(action, _function_arn(call, str(call.params["FunctionName"])))]


def _update_event_source_mapping(call: Call) -> list[Check]:
    """On the mapping's ARN, with its tags as aws:ResourceTag (the Service Authorization Reference
    lists them for eventSourceMapping). Changing the function it invokes is not modelled."""
    if "FunctionName" in call.params:
        raise UnmodelledOperation("lambda.UpdateEventSourceMapping with FunctionName")
    arn = f"arn:aws:lambda:{call.region}:{call.account}:event-source-mapping:{call.params['UUID']}"
    context = _tags_context(["aws:ResourceTag"], call.lookup.lambda_tags(arn))
    return [Check("lambda:UpdateEventSourceMapping", arn, context)]


# ----------------------------------------------------------------------------------- rules
def _table_arn(call: Call, table: str) -> str:
    """A table's ARN from a request's TableName (a name or an ARN)."""
    if table.startswith("arn:"):
        return table
    return f"arn:aws:dynamodb:{call.region}:{call.account}:table/{table}"


def _dynamodb_item(action: str) -> Rule:
    """Item writes on a table: the table's ARN. Encryption with a customer managed key is DynamoDB's
    own business through the grant it made at table creation: callers need no KMS permission
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/encryption.usagenotes.html)."""

    def rule(call: Call) -> list[Check]:
        arn = _table_arn(call, str(call.params.get("TableName", "")))
        # dynamodb:LeadingKeys: the partition key of the item a Get/Update/DeleteItem names (the
        # module's tables have a hash key only; PutItem's is not modelled: no policy tests it).
        key = call.params.get("Key") or {}
        keys = [str(v["S"]) for v in key.values() if isinstance(v, dict) and "S" in v][:1]
        return [Check(action, arn, {"dynamodb:LeadingKeys": keys} if keys else {})]

    return rule


def _dynamodb_batch_get(call: Call) -> list[Check]:
    """BatchGetItem: one check per table named, on its ARN, with every partition key asked for
    as dynamodb:LeadingKeys (a multivalued key: ForAllValues conditions test each)."""
    checks = []
    for table, request in (call.params.get("RequestItems") or {}).items():
        arn = _table_arn(call, str(table))
        keys = [
            str(v["S"])
            for key in request.get("Keys") or []
            for v in list(key.values())[:1]
            if isinstance(v, dict) and "S" in v
        ]
        checks.append(Check("dynamodb:BatchGetItem", arn, {"dynamodb:LeadingKeys": keys}))
    return checks


# What AWS authorizes each kind of TransactWriteItems action as (there is no IAM action named
# TransactWriteItems: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html).
_TRANSACT_WRITE_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def _dynamodb_transact_write(call: Call) -> list[Check]:
    """TransactWriteItems: one check per item, as the single-item call its action is, on its
    table, with the item's partition key as dynamodb:LeadingKeys (a Put's from its Item, by the
    table's key schema) and dynamodb:EnclosingOperation. Every check must pass: one item denied
    denies the transaction."""
    checks = []
    for entry in call.params.get("TransactItems") or []:
        for kind, op in entry.items():
            action = _TRANSACT_WRITE_ACTIONS.get(kind)
            if action is None:
                raise UnmodelledOperation(f"dynamodb.TransactWriteItems with {kind}")
            arn = _table_arn(call, str(op.get("TableName", "")))
            if kind == "Put":
                hash_key = call.lookup.table_hash_key(arn)
                item = op.get("Item") or {}
                key = {hash_key: item[hash_key]} if hash_key in item else {}
            else:
                key = op.get("Key") or {}
            keys = [str(v["S"]) for v in key.values() if isinstance(v, dict) and "S" in v][:1]
            context: dict[str, ContextValue] = {"dynamodb:EnclosingOperation": "TransactWriteItems"}
            if keys:
                context["dynamodb:LeadingKeys"] = keys
            checks.append(Check(action, arn, context))
    return checks


RULES: dict[tuple[str, str], Rule] = {
    ("sqs", "SendMessage"): _sqs("SendMessage", "GenerateDataKey"),
    ("sqs", "SendMessageBatch"): _sqs("SendMessage", "GenerateDataKey"),
    ("sqs", "ReceiveMessage"): _sqs("ReceiveMessage", "Decrypt"),
    ("sqs", "DeleteMessage"): _sqs("DeleteMessage"),
    ("sqs", "DeleteMessageBatch"): _sqs("DeleteMessage"),
    ("sqs", "ChangeMessageVisibility"): _sqs("ChangeMessageVisibility"),
    ("sqs", "ChangeMessageVisibilityBatch"): _sqs("ChangeMessageVisibility"),
    ("sqs", "GetQueueAttributes"): _sqs("GetQueueAttributes"),
    ("sqs", "GetQueueUrl"): _sqs_get_queue_url,
    ("ssm", "GetParameter"): _read_parameters("GetParameter"),
    ("ssm", "GetParameters"): _read_parameters("GetParameters"),
    ("ssm", "GetParametersByPath"): _get_parameters_by_path,
    ("ssm", "PutParameter"): _put_parameter,
    ("ssm", "DeleteParameter"): _delete_parameters("DeleteParameter"),
    ("ssm", "DeleteParameters"): _delete_parameters("DeleteParameters"),
    ("ssm", "DescribeParameters"): _unscoped("ssm:DescribeParameters"),
    ("ssm", "AddTagsToResource"): _add_tags_to_resource,
    ("ssm", "SendCommand"): _send_command,
    ("ssm", "ListCommands"): _unscoped("ssm:ListCommands"),
    ("ssm", "GetCommandInvocation"): _unscoped("ssm:GetCommandInvocation"),
    ("ec2", "DescribeInstances"): _unscoped("ec2:DescribeInstances"),
    ("ec2", "DescribeSpotPriceHistory"): _unscoped("ec2:DescribeSpotPriceHistory"),
    # The Price List API's endpoint prefix is `api.pricing`; its IAM prefix `pricing`.
    ("api.pricing", "GetProducts"): _unscoped("pricing:GetProducts"),
    ("ec2", "GetInstanceTypesFromInstanceRequirements"): _unscoped(
        "ec2:GetInstanceTypesFromInstanceRequirements"
    ),
    ("ec2", "TerminateInstances"): _terminate_instances,
    ("ec2", "StartInstances"): _on_instances("ec2:StartInstances"),
    ("ec2", "StopInstances"): _on_instances("ec2:StopInstances"),
    ("ec2", "DescribeLaunchTemplates"): _unscoped("ec2:DescribeLaunchTemplates"),
    ("ssm", "DescribeInstanceInformation"): _unscoped("ssm:DescribeInstanceInformation"),
    ("ec2", "CreateTags"): _create_tags,
    ("ec2", "RunInstances"): _run_instances,
    ("ec2", "CreateFleet"): _create_fleet,
    ("dynamodb", "PutItem"): _dynamodb_item("dynamodb:PutItem"),
    ("dynamodb", "DeleteItem"): _dynamodb_item("dynamodb:DeleteItem"),
    ("dynamodb", "UpdateItem"): _dynamodb_item("dynamodb:UpdateItem"),
    ("dynamodb", "GetItem"): _dynamodb_item("dynamodb:GetItem"),
    ("dynamodb", "BatchGetItem"): _dynamodb_batch_get,
    ("dynamodb", "TransactWriteItems"): _dynamodb_transact_write,
    ("kms", "Decrypt"): _kms("Decrypt"),
    ("kms", "Encrypt"): _kms("Encrypt"),
    ("kms", "GenerateDataKey"): _kms("GenerateDataKey"),
    ("lambda", "PutFunctionConcurrency"): _lambda_function("lambda:PutFunctionConcurrency"),
    ("lambda", "DeleteFunctionConcurrency"): _lambda_function("lambda:DeleteFunctionConcurrency"),
    ("lambda", "GetFunctionConcurrency"): _lambda_function("lambda:GetFunctionConcurrency"),
    ("lambda", "ListEventSourceMappings"): _unscoped("lambda:ListEventSourceMappings"),
    ("lambda", "UpdateEventSourceMapping"): _update_event_source_mapping,
}


# ----------------------------------------------------------------------------------- errors
@dataclass
class _Http:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


def denial_message(principal: Principal, check: Check, result: Result) -> str:
    """AWS's access-denied sentence (troubleshoot_access-denied.html)."""
    where = (
        "an identity-based policy"
        if result.policy_type == "identity"
        else "a resource-based policy"
    )
    kind = "identity-based" if result.policy_type == "identity" else "resource-based"
    head = (
        f"User: {principal.arn} is not authorized to perform: {check.action}"
        f" on resource: {check.resource}"
    )
    if result.decision is Decision.EXPLICIT_DENY:
        return f"{head} with an explicit deny in {where}"
    return f"{head} because no {kind} policy allows the {check.action} action"


def _encoded(principal: Principal, check: Check, result: Result) -> str:
    # EC2 appends an encoded message (sts:DecodeAuthorizationMessage); ours is readable base64 JSON.
    document = {
        "allowed": False,
        "explicitDeny": result.decision is Decision.EXPLICIT_DENY,
        "matchedStatements": list(result.statements),
        "context": {
            "principal": principal.arn,
            "action": check.action,
            "resource": check.resource,
            "conditions": dict(check.context),
        },
    }
    return base64.urlsafe_b64encode(json.dumps(document, default=str).encode()).decode()


def error_response(
    service_model: Any, operation_model: Any, principal: Principal, check: Check, result: Result
) -> tuple[_Http, dict[str, Any]]:
    """The HTTP error AWS sends for this denial, parsed by botocore's parser for the protocol."""
    message = denial_message(principal, check, result)
    request_id = str(uuid.uuid4())
    headers = {"x-amzn-requestid": request_id}
    protocol = service_model.metadata["protocol"]
    if check.style == "kms-via-sqs":
        # SQS names KMS failures KmsAccessDenied (query code KMS.AccessDeniedException), HTTP 400
        # (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html#API_SendMessage_Errors)
        status, code, query_code = 400, "KmsAccessDenied", "KMS.AccessDeniedException"
        message = f"{message} {_kms_suffix()}"
    elif check.style == "kms-via-ssm":
        status, code, query_code = 400, "AccessDeniedException", ""
        message = f"{message} {_kms_suffix()}"
    elif protocol == "ec2":
        status, code, query_code = 403, "UnauthorizedOperation", ""
        message = (
            f"You are not authorized to perform this operation. {message}. "
            f"Encoded authorization failure message: {_encoded(principal, check, result)}"
        )
    else:
        # JSON services (SSM, KMS, DynamoDB, SQS): AccessDeniedException, HTTP 400; SQS is
        # query-compatible and reports the query code AccessDenied.
        status, code, query_code = 400, "AccessDeniedException", "AccessDenied"
    if protocol == "ec2":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{code}</Code><Message>{_xml(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        ).encode()
    elif protocol == "query":
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{query_code or code}</Code>"
            f"<Message>{_xml(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
    elif protocol in ("json", "rest-json"):
        body = json.dumps({"__type": code, "message": message}).encode()
        headers["content-type"] = "application/x-amz-json-1.1"
        if query_code and "awsQueryCompatible" in service_model.metadata:
            headers["x-amzn-query-error"] = f"{query_code};Sender"
    else:
        raise UnmodelledOperation(
            f"{service_model.service_name}: protocol {protocol} is not modelled"
        )
    parsed = parsers.create_parser(protocol).parse(
        {"status_code": status, "headers": headers, "body": body}, operation_model.output_shape
    )
    return _Http(status, headers), parsed


def _kms_suffix() -> str:
    # How a service quotes the KMS error it got while acting for the caller.
    return (
        "(Service: AWSKMS; Status Code: 400; Error Code: AccessDeniedException;"
        f" Request ID: {uuid.uuid4()})"
    )


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ----------------------------------------------------------------------------------- enforcer
PrincipalSource = Principal | Callable[[], Principal | None]


class Enforcer:
    """Authorizes every call of the boto3 clients it is attached to.

    `principal` is a Principal or a callable returning the current one (a contextvar lookup, so
    one hook on shared clients serves several Lambda functions); a call with no principal fails
    with NoPrincipal. Denied calls raise the ClientError AWS would cause; `decisions` keeps every
    (operation, check, result) for tests and logs, and `raced_ends` the denied checks on an
    instance that had ended (shutting down or terminated) when it was refused.
    """

    def __init__(self, principal: PrincipalSource, lookup: Lookup, *, region: str) -> None:
        self._principal = principal
        self.lookup = lookup
        self.region = region
        self.decisions: list[tuple[str, Check, Result]] = []
        self.raced_ends: list[Check] = []
        self._lock = threading.Lock()
        self._id = f"iam-enforcer-{id(self)}"

    def principal(self) -> Principal:
        found = self._principal() if callable(self._principal) else self._principal
        if found is None:
            raise NoPrincipal("a call on an IAM-enforced client outside any bound principal")
        return found

    def attach(self, client: Any) -> Any:
        """Hook the client (returns it). Registered first on each operation, so that hooks that
        answer calls themselves (the agent shim, fault injection) come after authorization."""
        events = client.meta.events
        service_id = client.meta.service_model.service_id.hyphenize()
        events.register(
            f"before-parameter-build.{service_id}",
            self._keep_params,
            unique_id=f"{self._id}-params",
        )
        for operation in client.meta.service_model.operation_names:
            events.register_first(
                f"before-call.{service_id}.{operation}",
                self._before_call,
                unique_id=f"{self._id}-{operation}",
            )
        return client

    def detach(self, client: Any) -> None:
        events = client.meta.events
        service_id = client.meta.service_model.service_id.hyphenize()
        events.unregister(f"before-parameter-build.{service_id}", unique_id=f"{self._id}-params")
        for operation in client.meta.service_model.operation_names:
            events.unregister(
                f"before-call.{service_id}.{operation}", unique_id=f"{self._id}-{operation}"
            )

    @staticmethod
    def _keep_params(params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["iam_params"] = json.loads(json.dumps(params, default=str))

    def _before_call(self, model: Any, context: Mapping[str, Any], **_: Any) -> Any:
        service_model = model.service_model
        service = service_model.endpoint_prefix  # the IAM prefix for the services we model
        refused = self.refusal(service, model.name, context.get("iam_params", {}))
        if refused is None:
            return None
        return error_response(service_model, model, *refused)

    def refusal(
        self, service: str, operation: str, params: Mapping[str, Any]
    ) -> tuple[Principal, Check, Result] | None:
        """Authorize one call of the current principal (what the hook does for a botocore
        client; the stack's event source pollers call it for their calls on moto's backend):
        every check recorded in `decisions`; the first refused, or None when all are allowed."""
        principal = self.principal()
        rule = RULES.get((service, operation))
        if rule is None:
            raise UnmodelledOperation(
                f"no IAM rule for {service}.{operation}: add one to devstack/iam/enforce.py RULES"
            )
        call = Call(service, operation, params, self.region, principal.account, self.lookup)
        for check in rule(call):
            result = self.authorize(principal, check)
            with self._lock:
                self.decisions.append((f"{service}.{operation}", check, result))
            if not result.allowed:
                if self._ended(check.resource):
                    with self._lock:
                        self.raced_ends.append(check)
                return principal, check, result
        return None

    def _ended(self, resource: str) -> bool:
        """Whether `resource` is an instance that has ended (as it is now, just after the
        refusal). Ending an instance takes its instance profile away, and with it the
        `ec2:InstanceProfile` key the module's policies require: a call racing an instance's
        end (a swap's tag write as spot reclaims the runner) is refused so in AWS too, and
        the caller's retry finds the instance gone."""
        kind, _, instance_id = resource.rpartition(":")[2].partition("/")
        if kind != "instance" or not instance_id:
            return False
        info = self.lookup.instance(instance_id)
        return info is not None and info.state in ("shutting-down", "terminated")

    def authorize(self, principal: Principal, check: Check) -> Result:
        """Evaluate one check with the global keys AWS adds to every request."""
        now = time.time()
        context: dict[str, ContextValue] = {
            "aws:PrincipalArn": principal.role_arn,
            "aws:PrincipalAccount": principal.account,
            "aws:PrincipalType": "AssumedRole",
            "aws:RequestedRegion": self.region,
            "aws:SecureTransport": "true",
            "aws:ViaAWSService": "false",
            "aws:CurrentTime": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "aws:EpochTime": str(int(now)),
            **principal.context,
            **check.context,
        }
        request = Request(principal.arn, check.action, check.resource, context)
        return evaluate(
            principal.policies(),
            request,
            resource_policy=check.resource_policy,
            resource_policy_mode=check.mode,
        )
