"""Moto in server mode on 127.0.0.1 and the AWS world the Terraform module would create in it.

Names and documents follow terraform/main.tf (`local.*`): queues `<prefix>-jobs` and
`<prefix>-jobs-dlq` (redrive policy), launch templates `<prefix>-<template>`, the runner-template
document at `/<prefix>/config/runner-templates`, secrets under `/<prefix>/secrets/`. The runner
templates come from devstack/runner_templates.json, which has the shape of the module's
`runner_templates` variable (a valid tfvars value); the DESIGN §2 document the Lambdas read is the
module's own `local.templates_document`, rendered from them (devstack/tfrender.py).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.deployment import ACCOUNT

TEMPLATES_FILE = Path(__file__).with_name("runner_templates.json")
REGION = "eu-west-1"


def moto_queue(url: str, region: str = REGION) -> tuple[Any, str]:
    """moto's SQS backend in this process, and the name of the queue `url` names in it (what
    an AWS service reaches without an API call of ours)."""
    from moto.sqs.models import sqs_backends

    return sqs_backends[ACCOUNT][region], url.rstrip("/").rsplit("/", 1)[-1]


# A cheap read per service: moto builds a service's backend (EC2's: default VPC, zones) and its
# request parser on the first request it gets.
_WARM_CALLS: Mapping[str, str] = {
    "ec2": "describe_vpcs",
    "sqs": "list_queues",
    "ssm": "describe_parameters",
}


def load_tf_templates(path: Path = TEMPLATES_FILE) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text()))


@dataclass
class Names:
    prefix: str

    @property
    def job_queue(self) -> str:
        return f"{self.prefix}-jobs"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}-jobs-dlq"

    @property
    def teardown_queue(self) -> str:
        return f"{self.prefix}-teardown"

    @property
    def teardown_dlq(self) -> str:
        return f"{self.prefix}-teardown-dlq"

    @property
    def templates_param(self) -> str:
        return f"/{self.prefix}/config/runner-templates"

    @property
    def webhook_secret_param(self) -> str:
        return f"/{self.prefix}/secrets/webhook-secret"

    @property
    def github_app_key_param(self) -> str:
        return f"/{self.prefix}/secrets/github-app-key"

    @property
    def deliveries_table(self) -> str:
        return f"{self.prefix}-deliveries"

    @property
    def jit_path(self) -> str:
        return f"/{self.prefix}/jit/"


@dataclass
class AwsWorld:
    """A moto server plus the resources of one deployment; `env()` is the Lambdas' environment."""

    prefix: str = "jitrunners"
    tf_templates: list[dict[str, Any]] = field(default_factory=load_tf_templates)
    # The module's default (terraform/variables.tf): above start_timeout_s / back-off, so a start
    # that waits for a slow SSM agent does not go round the DLQ (5, the module's minimum, did).
    max_receive_count: int = 20
    visibility_timeout_s: int = 6
    endpoint_url: str = ""
    job_queue_url: str = ""
    dlq_url: str = ""
    # EventBridge's events for scale-down (terraform/queues.tf `teardown`) and its DLQ.
    teardown_queue_url: str = ""
    teardown_dlq_url: str = ""
    # terraform/queues.tf: six times scale-down's timeout in AWS; short here, as for the job queue.
    teardown_visibility_timeout_s: int = 6
    teardown_max_receive_count: int = 10
    subnet_ids: list[str] = field(default_factory=list)
    _server: Any = None
    _clients: dict[str, Any] = field(default_factory=dict)
    _clients_lock: threading.Lock = field(default_factory=threading.Lock)
    _terminated: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Reservations whose instances all terminated, with their items (instances_in_process).
    _ended_reservations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # The watcher's view (instance_changes): reservations counted so far, those with an
    # instance not yet terminated, and the terminated instances it was given already.
    _watch_counted: int = 0
    _watch_open: dict[str, Any] = field(default_factory=dict)
    _watch_given: set[str] = field(default_factory=set)
    # Extra module variables for the renders (runner download location and checksums...).
    tfvars_extra: dict[str, Any] = field(default_factory=dict)
    # Resource types the launch templates tag at creation (runners.tf tag_specifications); a test
    # removes one to show the launch policy then denies the launch.
    launch_template_tagged: tuple[str, ...] = ("instance", "volume", "network-interface")
    kms_key_arn: str = ""
    runner_role_arn: str = ""
    runner_profile_arn: str = ""
    documents: Any = None  # devstack.tfrender.Documents once created

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    def start(self) -> AwsWorld:
        from devstack import moto_fixes, startup

        # Before moto is imported and builds backends: both are read then.
        startup.lighten_moto()
        startup.share_botocore_models()
        from devstack.wsgi_server import KeepAliveMotoServer

        moto_fixes.apply()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        # moto's own server (Werkzeug's) closes the connection after every answer: a kept-alive
        # one spares each AWS call of another process (the runner scripts' aws CLI) a TCP
        # connection and a server thread; this process's clients skip the socket altogether.
        self._server = KeepAliveMotoServer("127.0.0.1", 0)
        self._server.start()
        host, port = self._server.get_host_and_port()
        return self.attach(f"http://{host}:{port}")

    def attach(self, endpoint_url: str) -> AwsWorld:
        """Point this world and the process at a moto server of this process, emptied (tests
        share one warm server per worker): moto's backends are process-wide, so a reset gives
        each world, and a second server, an account of its own."""
        os.environ.update(
            AWS_ACCESS_KEY_ID="devstack",
            AWS_SECRET_ACCESS_KEY="devstack",
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
        )
        os.environ.pop("AWS_SESSION_TOKEN", None)
        self.endpoint_url = endpoint_url
        os.environ["AWS_ENDPOINT_URL"] = self.endpoint_url
        import requests

        # A bound against a hung server only: on a busy machine a reset can take seconds.
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=120).raise_for_status()
        return self

    def warm(self, service: str) -> None:
        """Make moto build `service`'s backend now (start-up), not in the first Lambda's call."""
        getattr(self.client(service), _WARM_CALLS[service])()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self, service: str) -> Any:
        """One client per service (botocore clients are thread-safe; building one is not cheap)."""
        with self._clients_lock:
            if service not in self._clients:
                import boto3

                self._clients[service] = boto3.session.Session().client(
                    service, endpoint_url=self.endpoint_url, region_name=REGION
                )
            return self._clients[service]

    def spot_reclaim(self, instance_id: str) -> None:
        """EC2 takes a spot instance back: terminated, with the state reason AWS gives it (moto
        runs in this process; its TerminateInstances always says "user initiated")."""
        from moto.ec2.models import ec2_backends
        from moto.ec2.models.instances import StateReason

        self.client("ec2").terminate_instances(InstanceIds=[instance_id])
        ec2_backends[ACCOUNT][REGION].get_instance(instance_id).state_reason = StateReason(
            "Server.SpotInstanceTermination: Spot instance termination",
            "Server.SpotInstanceTermination",
        )

    def create(
        self,
        *,
        webhook_secret: str,
        github_app_key: str,
        runner: Mapping[str, Any] | None = None,
    ) -> None:
        """Create what `terraform apply` would, minus the parts moto has no use for.

        Policies, the key policy, the launch templates' tags and user data come from the module's
        own documents.tf, rendered by the terraform binary (devstack/tfrender.py). `runner`: the
        module's runner variables (devstack/runner_dist.py RunnerDist.tfvars(): the local mirror
        and its checksums) that the user data passes to bootstrap.sh."""
        from devstack import deployment, tfrender

        self.tfvars_extra = {**self.tfvars_extra, **dict(runner or {})}
        ec2, sqs, ssm = self.client("ec2"), self.client("sqs"), self.client("ssm")
        kms, iam = self.client("kms"), self.client("iam")
        # Before anything exists: the key policy, the launch templates' tags and user data need
        # no ARN (well-formed stand-ins fill local.deployed).
        first = deployment.documents(
            self.tf_templates, prefix=self.prefix, region=REGION, runner=self.tfvars_extra
        )
        self.kms_key_arn = kms.create_key(
            Description=f"{self.prefix}: SSM secrets, JIT configs, queues",
            Policy=json.dumps(first.kms_key_policy),
        )["KeyMetadata"]["Arn"]
        role = iam.create_role(
            RoleName=first.runner_role_name,
            AssumeRolePolicyDocument=json.dumps(first.assume_role_policies["ec2"]),
        )["Role"]
        self.runner_role_arn = role["Arn"]
        profile = iam.create_instance_profile(InstanceProfileName=first.runner_role_name)
        iam.add_role_to_instance_profile(
            InstanceProfileName=first.runner_role_name, RoleName=first.runner_role_name
        )
        self.runner_profile_arn = profile["InstanceProfile"]["Arn"]
        vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        for index, zone in enumerate(("a", "b")):
            # /20: 4,091 addresses each, room for a burst of a thousand runners (a /24 has 251).
            subnet = ec2.create_subnet(
                VpcId=vpc, CidrBlock=f"10.42.{16 * index}.0/20", AvailabilityZone=f"{REGION}{zone}"
            )
            self.subnet_ids.append(subnet["Subnet"]["SubnetId"])
        group = ec2.create_security_group(
            GroupName=f"{self.prefix}-runner", Description="runners", VpcId=vpc
        )["GroupId"]
        tags = [{"Key": "jitrunners:prefix", "Value": self.prefix}]
        launch_templates: dict[str, str] = {}
        for t in self.tf_templates:
            # terraform/runners.tf aws_launch_template.runner, field by field.
            created = ec2.create_launch_template(
                LaunchTemplateName=f"{self.prefix}-{t['name']}",
                LaunchTemplateData={
                    "ImageId": t["ami_id"],
                    "InstanceType": t["instance_types"][0],
                    "SecurityGroupIds": [group],
                    "InstanceInitiatedShutdownBehavior": "terminate",
                    "IamInstanceProfile": {"Arn": self.runner_profile_arn},
                    "MetadataOptions": {
                        "HttpEndpoint": "enabled",
                        "HttpTokens": "required",
                        "HttpPutResponseHopLimit": 1,
                    },
                    "TagSpecifications": [
                        {
                            "ResourceType": kind,
                            "Tags": [
                                {"Key": k, "Value": v}
                                for k, v in first.launch_template_tags[t["name"]].items()
                            ],
                        }
                        for kind in self.launch_template_tagged
                    ],
                    # base64, as runners.tf passes it
                    "UserData": base64.b64encode(first.user_data[t["name"]].encode()).decode(),
                },
                TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags}],
            )["LaunchTemplate"]
            launch_templates[t["name"]] = (
                f"arn:aws:ec2:{REGION}:{ACCOUNT}:launch-template/{created['LaunchTemplateId']}"
            )
        self.dlq_url = sqs.create_queue(
            QueueName=self.names.dlq, Attributes={"KmsMasterKeyId": self.kms_key_arn}
        )["QueueUrl"]
        dlq_arn = self._queue_arn(self.dlq_url)
        self.job_queue_url = sqs.create_queue(
            QueueName=self.names.job_queue,
            Attributes={
                "VisibilityTimeout": str(self.visibility_timeout_s),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": self.max_receive_count}
                ),
                "KmsMasterKeyId": self.kms_key_arn,
            },
        )["QueueUrl"]
        self.teardown_dlq_url = sqs.create_queue(
            QueueName=self.names.teardown_dlq, Attributes={"KmsMasterKeyId": self.kms_key_arn}
        )["QueueUrl"]
        teardown_dlq_arn = self._queue_arn(self.teardown_dlq_url)
        self.teardown_queue_url = sqs.create_queue(
            QueueName=self.names.teardown_queue,
            Attributes={
                "VisibilityTimeout": str(self.teardown_visibility_timeout_s),
                "RedrivePolicy": json.dumps(
                    {
                        "deadLetterTargetArn": teardown_dlq_arn,
                        "maxReceiveCount": self.teardown_max_receive_count,
                    }
                ),
                "KmsMasterKeyId": self.kms_key_arn,
            },
        )["QueueUrl"]
        # The webhook's replay guard (terraform/deliveries.tf; moto has no use for its TTL).
        self.client("dynamodb").create_table(
            TableName=self.names.deliveries_table,
            KeySchema=[{"AttributeName": "delivery_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "delivery_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ssm.put_parameter(
            Name=self.names.templates_param,
            Type="String",
            Value=json.dumps(first.templates_document),
        )
        for name, value in (
            (self.names.webhook_secret_param, webhook_secret),
            (self.names.github_app_key_param, github_app_key),
        ):
            ssm.put_parameter(Name=name, Type="SecureString", Value=value, KeyId=self.kms_key_arn)
        # What main.tf's local.deployed lists: the ARNs and ids of what was created here, names
        # for the rest (log groups, rules, the events DLQ and the table, derived from the prefix).
        deployed = {
            **deployment.deployed(self.tf_templates, prefix=self.prefix, region=REGION),
            "kms_key_arn": self.kms_key_arn,
            "jobs_queue_arn": self._queue_arn(self.job_queue_url),
            "dlq_arn": dlq_arn,
            "teardown_queue_arn": self._queue_arn(self.teardown_queue_url),
            "teardown_dlq_arn": teardown_dlq_arn,
            "launch_template_arns": launch_templates,
            "runner_role_arn": self.runner_role_arn,
            "runner_security_group_id": group,
        }
        self.documents = tfrender.render(
            deployment.tfvars(
                self.tf_templates,
                prefix=self.prefix,
                runner=self.tfvars_extra,
                vpc_id=vpc,
                subnet_ids=self.subnet_ids,
            ),
            account_id=ACCOUNT,
            region=REGION,
            deployed=deployed,
        )
        # The runner role's policies, as iam.tf attaches them: what an instance's credentials
        # are authorized against (devstack/fake_aws.py reads them from IAM).
        for name, document in self.documents.runner_policies.items():
            iam.put_role_policy(
                RoleName=self.documents.runner_role_name,
                PolicyName=name,
                PolicyDocument=json.dumps(document),
            )
        for url, key in (
            (self.job_queue_url, "jobs"),
            (self.dlq_url, "jobs_dlq"),
            (self.teardown_queue_url, "teardown"),
            (self.teardown_dlq_url, "teardown_dlq"),
        ):
            sqs.set_queue_attributes(
                QueueUrl=url, Attributes={"Policy": json.dumps(self.documents.queue_policies[key])}
            )

    def _queue_arn(self, url: str) -> str:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn"]
        )["Attributes"]
        return str(attributes["QueueArn"])

    def env(self, *, github_api_url: str, github_app_id: str, **extra: str) -> dict[str, str]:
        """The Lambdas' environment, as terraform/main.tf `local.environment` builds it."""
        values = {
            "JITRUNNERS_PREFIX": self.prefix,
            "JOB_QUEUE_URL": self.job_queue_url,
            "DLQ_URL": self.dlq_url,
            "RUNNER_TEMPLATES_PARAM": self.names.templates_param,
            "WEBHOOK_SECRET_PARAM": self.names.webhook_secret_param,
            "DELIVERIES_TABLE": self.names.deliveries_table,
            "GITHUB_API_URL": github_api_url,
            "GITHUB_APP_ID": github_app_id,
            "GITHUB_APP_KEY_PARAM": self.names.github_app_key_param,
            "RUNNER_SUBNET_IDS": ",".join(self.subnet_ids),
            "JIT_KMS_KEY_ID": self.kms_key_arn,
            "RUNNER_INSTANCE_PROFILE_ARN": self.runner_profile_arn,
            "POWERTOOLS_SERVICE_NAME": self.prefix,
            "POWERTOOLS_METRICS_NAMESPACE": self.prefix,
        }
        values.update(extra)
        return values

    # ---- what is left (the demo's closing line)
    def instances(self, states: Sequence[str] = ("pending", "running", "stopping", "stopped")):
        ec2 = self.client("ec2")
        found = []
        for page in ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": "tag:jitrunners:prefix", "Values": [self.prefix]},
                {"Name": "instance-state-name", "Values": list(states)},
            ]
        ):
            for reservation in page["Reservations"]:
                found.extend(reservation["Instances"])
        return found

    def instances_in_process(self, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Our instances as DescribeInstances lists them (id, state, tags, lifecycle), read from
        moto's backend in this process: no request and no serialisation, which for a thousand
        instances take seconds."""
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[ACCOUNT][REGION]
        found = []
        ended = self._ended_reservations
        for reservation_id, reservation in list(backend.reservations.items()):
            if reservation_id in ended:
                # Every instance of it terminated (and so for good): seen, not read again.
                if states is None or "terminated" in states:
                    found += ended[reservation_id]
                continue
            instances = list(reservation.instances)
            if instances and all(i.id in self._terminated for i in instances):
                ended[reservation_id] = [self._terminated[i.id] for i in instances]
            for instance in instances:
                item = self._instance_item(backend, instance)
                if item is not None and (states is None or item["State"]["Name"] in states):
                    found.append(item)
        return found

    def instance_changes(self) -> list[dict[str, Any]]:
        """What the local stack's watcher needs each round (`Options(watch="moto")`): our
        instances as `instances_in_process` lists them, less those it was given as terminated
        already; each terminated instance comes once. A round reads only the reservations with
        an instance not yet terminated (and those new since the last round): listing every
        instance of a 10,000-job burst three times a second was a fifth of its CPU by the end."""
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[ACCOUNT][REGION]
        reservations = backend.reservations
        ids = list(reservations)  # moto only adds reservations, in order
        for reservation_id in ids[self._watch_counted :]:
            self._watch_open[reservation_id] = reservations[reservation_id]
        self._watch_counted = len(ids)
        found = []
        for reservation_id, reservation in list(self._watch_open.items()):
            instances = list(reservation.instances)
            if instances and all(i.id in self._watch_given for i in instances):
                del self._watch_open[reservation_id]
                continue
            for instance in instances:
                if instance.id in self._watch_given:
                    continue
                item = self._instance_item(backend, instance)
                if item is None:
                    # Not ours, or not tagged yet (moto tags a fleet's instances after making
                    # them, and this runs in another thread): looked at again next round.
                    continue
                if item["State"]["Name"] == "terminated":
                    self._watch_given.add(instance.id)
                found.append(item)
        return found

    def _instance_item(self, backend: Any, instance: Any) -> dict[str, Any] | None:
        """One instance as DescribeInstances lists it, None when it is not ours; a terminated
        one's item is kept (it stays so)."""
        done = self._terminated.get(instance.id)
        if done is not None:
            return done
        tags = dict(backend.tags.get(instance.id) or {})
        if tags.get("jitrunners:prefix") != self.prefix:
            return None
        item: dict[str, Any] = {
            "InstanceId": instance.id,
            "State": {"Name": instance.state},
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        }
        if instance.lifecycle:
            item["InstanceLifecycle"] = instance.lifecycle
        if instance.state == "terminated":
            self._terminated[instance.id] = item
        return item

    def jit_params(self) -> list[str]:
        ssm = self.client("ssm")
        names: list[str] = []
        for page in ssm.get_paginator("get_parameters_by_path").paginate(
            Path=self.names.jit_path, Recursive=True
        ):
            names.extend(p["Name"] for p in page["Parameters"])
        return names

    def queue_contents(self, url: str) -> dict[str, int]:
        """What a queue holds, read from moto's backend in this process (no receive, so no
        receive count moves): messages by kind (a job message's `kind`, `?` when not one),
        whether delayed, in flight or visible, and how often received so far."""
        backend, name = moto_queue(url)
        queue = backend.queues[name]
        found: Counter[str] = Counter()
        for message in list(queue._messages):
            try:
                body = json.loads(message.body)
            except ValueError:
                body = None
            kind = str(body.get("kind", "?")) if isinstance(body, dict) else "?"
            state = "delayed" if message.delayed else "visible" if message.visible else "in-flight"
            received = message.approximate_receive_count
            found[f"{kind} {state} received {received}"] += 1
        return dict(found)

    def deliver(self, url: str, body: str) -> None:
        """A message an AWS service puts on a queue (EventBridge's SQS target): into moto's
        backend in this process, as the service's own delivery is no API call of ours."""
        backend, name = moto_queue(url)
        backend.send_message(name, body)

    def queue_depth(self, url: str) -> int:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())
