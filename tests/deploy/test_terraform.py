"""Static consistency of terraform/ with the Lambda package, DESIGN and docs/contracts.md.

The truth comes from the code: handler modules, the environment the package reads, and the AWS
calls in each handler's import closure (`client("svc").op(...)`, docs/contracts.md).
"""

from __future__ import annotations

import ast
import base64
import gzip
import json
import re
from pathlib import Path

import hcl2
import pytest
from scripts import tfdocs

from devstack.aws_world import TEMPLATES_FILE
from jitrunners import config
from tests.deploy import rendered
from tests.deploy import tfmodel as tf

FUNCTIONS = {  # Terraform key -> policy document name
    "webhook": "webhook",
    "scale-up": "scale_up",
    "scale-down": "scale_down",
    "redrive": "redrive",
    "housekeeper": "housekeeper",
    "budget-guard": "budget_guard",
}
# Handlers being written on other branches (issues 3 and 4). Their checks skip until the module
# lands; a missing handler that is NOT listed here fails. Empty this set once they are merged.
PENDING_HANDLERS: set[str] = set()

# Actions a function's policy grants although its code makes no such call, each with its reason.
# Anything else in a policy that the code does not call fails the test.
KMS_SECRETS = {"kms:Decrypt": "SecureString parameters and SQS messages under the module's CMK"}
REVIEWED_EXTRAS: dict[str, dict[str, str]] = {
    "webhook": {
        **KMS_SECRETS,
        "kms:GenerateDataKey": "SendMessage to a queue encrypted with the CMK",
    },
    "scale-up": {
        **KMS_SECRETS,
        "kms:GenerateDataKey": "SendMessage to the CMK-encrypted queue; SecureString PutParameter",
        "kms:Encrypt": "PutParameter of the JIT config as SecureString under the CMK",
        "sqs:ReceiveMessage": "the SQS event source mapping polls with the function's role",
        "sqs:DeleteMessage": "the event source mapping deletes successful records",
        "sqs:ChangeMessageVisibility": "the event source mapping and back-off of `start` retries",
        "sqs:GetQueueAttributes": "the event source mapping reads the queue's attributes",
        "ec2:RunInstances": "CreateFleet (instant) launches through RunInstances",
        "ec2:CreateTags": "TagSpecifications at creation require CreateTags (ec2:CreateAction)",
        "iam:PassRole": "the launch template's instance profile passes the runner role",
        "iam:CreateServiceLinkedRole": "the first spot request of an account creates the spot SLR",
        "ssm:AddTagsToResource": "PutParameter with Tags (the JIT config's instance-ARN tag)",
    },
    "scale-down": {
        **KMS_SECRETS,
        "sqs:ReceiveMessage": "the teardown queue's event source mapping polls with this role",
        "sqs:DeleteMessage": "the event source mapping deletes successful records",
        "sqs:ChangeMessageVisibility": "the event source mapping returns failed records",
        "sqs:GetQueueAttributes": "the event source mapping reads the queue's attributes",
        "ssm:AddTagsToResource": "PutParameter with Tags (the re-run records) requires it",
        "kms:GenerateDataKey": "SendMessage to the CMK-encrypted job queue",
    },
    "redrive": {
        **KMS_SECRETS,
        "kms:GenerateDataKey": "SendMessage to the CMK-encrypted queues",
    },
    "housekeeper": {
        **KMS_SECRETS,
        "ssm:AddTagsToResource": "PutParameter with Tags (re-run and redelivery records)",
        "kms:GenerateDataKey": "SendMessage to the CMK-encrypted job queue",
    },
    "budget-guard": {},
}
# Granted to every function by the shared `lambda_base` document.
BASE_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents", "xray:PutTraceSegments",
                "xray:PutTelemetryRecords"}  # fmt: skip
ASYNC_FUNCTIONS = {"redrive", "housekeeper", "budget-guard"}
ASYNC_DLQ_ACTIONS = {"sqs:SendMessage", "kms:GenerateDataKey", "kms:Decrypt"}
# Read-only or resource-less actions that may use Resource "*".
STAR_OK = re.compile(
    r"^(ec2:(Describe\w+|GetInstanceTypesFromInstanceRequirements)|logs:DescribeLogGroups|xray:\w+|"
    r"pricing:GetProducts|"
    r"ssm:(GetCommandInvocation|ListCommandInvocations|ListCommands|DescribeParameters|"
    r"DescribeInstanceInformation)|"
    r"lambda:ListEventSourceMappings)$"
)
# Set by Terraform although the package does not read them itself (Powertools reads them).
POWERTOOLS_ENV = re.compile(r"^POWERTOOLS_[A-Z_]+$")
# Read by the package but deliberately absent in AWS: the local stack's plain settings.
LOCAL_ONLY_ENV = {
    "RUNNER_TEMPLATES": "templates live in SSM (4 KB env limit)",
    "WEBHOOK_SECRET": "secrets never in plain environment variables in AWS",
    "RETRY_DELAY_PERCENT": "shortens retry delays for the local stack; AWS keeps the defaults",
    "RECONCILE_GRACE_S": "shortens the reconciliation's grace for the local stack and tests",
    "TEARDOWN_GRACE_S": "shortens the housekeeper's wait for scale-down for the local stack",
    "HOUSEKEEPER_FULL_LISTING_S": "scaled to the local stack's housekeeper period; AWS keeps 900",
}
# Set by Lambda itself in every function's environment (read for per-version canary metrics).
LAMBDA_RUNTIME_ENV = {"AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION"}


def handler_module(key: str) -> str:
    handler = tf.locals_()["functions"][key]["handler"]
    module, _, attr = handler.rpartition(".")
    assert attr == "handler"
    return module


def require_handler(key: str) -> str:
    module = handler_module(key)
    if tf.module_path(module) is None:
        short = module.rpartition(".")[2]
        if short in PENDING_HANDLERS:
            pytest.skip(f"{module} is not merged yet (pending)")
        pytest.fail(f"Terraform wires {module}, which the package does not have")
    return module


def test_every_tf_file_parses() -> None:
    files = tf.tf_files()
    assert len(files) >= 12
    for path in files:
        with path.open() as handle:
            assert hcl2.load(handle), path


def test_the_functions_are_wired_with_the_contract_handlers() -> None:
    functions = tf.locals_()["functions"]
    assert set(functions) == set(FUNCTIONS)
    for key in functions:
        assert handler_module(key) == "jitrunners.handlers." + key.replace("-", "_")


@pytest.mark.parametrize("key", sorted(FUNCTIONS))
def test_handler_string_exists_in_the_package(key: str) -> None:
    module = require_handler(key)
    tree = ast.parse(tf.module_path(module).read_text())  # type: ignore[union-attr]
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "handler" in defined, module


def test_every_handler_module_in_the_package_is_deployed() -> None:
    present = {p.stem for p in (tf.PACKAGE / "handlers").glob("*.py") if p.stem != "__init__"}
    assert "webhook" in present
    wired = {handler_module(k).rpartition(".")[2] for k in FUNCTIONS}
    assert present <= wired


def test_terraform_sets_every_environment_variable_the_code_reads() -> None:
    reads = tf.env_reads()
    assert {"JOB_QUEUE_URL", "RUNNER_TEMPLATES_PARAM", "WEBHOOK_SECRET_PARAM"} <= reads
    env = set(tf.locals_()["environment"])
    assert reads - set(LOCAL_ONLY_ENV) - LAMBDA_RUNTIME_ENV - env == set(), (
        "read by the code, not set by Terraform"
    )
    assert env & set(LOCAL_ONLY_ENV) == set(), "local-stack-only settings must not be set in AWS"
    assert {v for v in env - reads if not POWERTOOLS_ENV.match(v)} == set(), "set but never read"
    functions = tf.blocks("resource", "aws_lambda_function")["this"]
    assert functions["environment"][0]["variables"] == "${local.environment}"


def test_the_scan_finds_the_webhook_calls() -> None:
    """The scan is not vacuous: the webhook sends to SQS, reads its secret through Powertools
    and claims (or releases) delivery ids in DynamoDB."""
    assert tf.handler_actions("jitrunners.handlers.webhook") == {
        "sqs:SendMessage",
        "ssm:GetParameter",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
    }


def test_scan_reads_paginators_and_refuses_indirect_clients(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n"
        '    client("ec2").get_paginator("describe_instances")\n'
        '    client("ssm").send_command(InstanceIds=[])\n'
    )
    assert tf.aws_actions_in(module) == {"ec2:DescribeInstances", "ssm:SendCommand"}
    module.write_text('ec2 = client("ec2")\n')
    with pytest.raises(tf.UnscannableCall):
        tf.aws_actions_in(module)


@pytest.mark.parametrize("key", sorted(FUNCTIONS))
def test_function_policy_grants_exactly_what_its_code_calls(key: str) -> None:
    module = require_handler(key)
    called = tf.handler_actions(module)
    docs = rendered.documents()
    granted = rendered.actions(docs.function_policies[key])
    assert called - granted == set(), f"{key}: called by the code but not granted"
    unexplained = granted - called - set(REVIEWED_EXTRAS[key])
    assert unexplained == set(), f"{key}: granted but neither called nor reviewed"


def test_every_function_has_its_own_role_and_the_base_policy_is_minimal() -> None:
    roles = tf.blocks("resource", "aws_iam_role")["function"]
    assert roles["for_each"] == "${local.functions}"
    docs = rendered.documents()
    for key in FUNCTIONS:
        granted = rendered.actions(docs.lambda_base_policies[key])
        expected = BASE_ACTIONS | (ASYNC_DLQ_ACTIONS if key in ASYNC_FUNCTIONS else set())
        assert granted == expected, key


def _all_statements() -> list[tuple[str, dict]]:
    """Every Allow statement of every identity policy (resource policies have a Principal)."""
    return [
        (name, st)
        for name, doc in rendered.documents().all_policies().items()
        for st in rendered.statements(doc)
        if st["Effect"] == "Allow" and "Principal" not in st
    ]


def test_identity_policies_use_star_only_for_actions_without_resource_level_permissions() -> None:
    for name, st in _all_statements():
        if st.get("Sid") == "RunCommandMessages":  # the agent's APIs act on the calling instance
            assert all(a.split(":")[0] in ("ec2messages", "ssmmessages") for a in st["Action"])
            continue
        if "*" in st["Resource"]:
            assert all(STAR_OK.match(a) for a in st["Action"]), (name, st["Action"])


def test_terminate_tag_and_command_only_our_instances() -> None:
    """Ours = our prefix tag AND our runner instance profile (a tag alone anyone could set)."""
    profile = f"arn:aws:iam::{rendered.ACCOUNT}:instance-profile/jitrunners-runner"
    seen = 0
    for name, st in _all_statements():
        cond = rendered.conditions(st)
        if "ec2:TerminateInstances" in st["Action"]:
            seen += 1
        if {"ec2:TerminateInstances", "ec2:StartInstances", "ec2:StopInstances"} & set(
            st["Action"]
        ):
            assert cond["aws:ResourceTag/jitrunners:prefix"] == ["jitrunners"], name
            assert cond["ec2:InstanceProfile"] == [profile], name
        if "ec2:CreateTags" in st["Action"]:
            created = cond.get("ec2:CreateAction") == ["CreateFleet", "RunInstances"]
            assert created or (
                cond["aws:ResourceTag/jitrunners:prefix"] == ["jitrunners"]
                and cond["ec2:InstanceProfile"] == [profile]
                and "jitrunners:prefix" not in cond["aws:TagKeys"]
                and "jitrunners:template" not in cond["aws:TagKeys"]
                and "jitrunners:pool" not in cond["aws:TagKeys"]
            ), name
        if "ssm:SendCommand" in st["Action"] and any(":instance/" in r for r in st["Resource"]):
            assert cond["aws:ResourceTag/jitrunners:prefix"] == ["jitrunners"], name
    assert seen >= 3  # scale-up, scale-down, housekeeper


def test_launches_need_our_templates_tags_types_and_images() -> None:
    docs = rendered.documents()
    templates = docs.templates_document
    lts = sorted(rendered.deployed(templates)["launch_template_arns"].values())
    launch = [st for st in rendered.statements(docs.function_policies["scale-up"])
              if "ec2:RunInstances" in st["Action"]]  # fmt: skip
    by_resource = {r.split(":")[-1].split("/")[0]: st for st in launch for r in st["Resource"]}
    for kind in ("instance", "volume", "network-interface"):
        cond = rendered.conditions(by_resource[kind])
        assert cond["aws:RequestTag/jitrunners:prefix"] == ["jitrunners"], kind
        assert sorted(cond["ec2:LaunchTemplate"]) == lts, kind
    types = rendered.conditions(by_resource["instance"])["ec2:InstanceType"]
    sized = {f"{f}.*" for t in templates if t.get("sizing") for f in t["sizing"]["families"]}
    assert sized  # the local stack's templates include a sized one
    assert set(types) == {it for t in templates for it in t["instance_types"]} | sized
    images = {r for st in launch for r in st["Resource"] if ":image/" in r}
    assert images == {f"arn:aws:ec2:{rendered.REGION}::image/{t_ami}" for t_ami in _template_amis()}
    assert not [r for st in launch for r in st["Resource"] if r.endswith(("image/*", ":*"))]


def _template_amis() -> set[str]:
    return {t["ami_id"] for t in json.loads(TEMPLATES_FILE.read_text())}


def test_launch_templates_tag_instance_volume_and_interface() -> None:
    lt = tf.blocks("resource", "aws_launch_template")["runner"]
    dynamic = lt["dynamic"][0]["tag_specifications"]
    assert set(dynamic["for_each"].split('"')[1::2]) == {"instance", "volume", "network-interface"}
    tags = rendered.documents().launch_template_tags
    assert all(t["jitrunners:prefix"] == "jitrunners" for t in tags.values())


def test_pass_role_only_for_the_runner_role_to_ec2() -> None:
    passes = [st for _, st in _all_statements() if "iam:PassRole" in st["Action"]]
    assert len(passes) == 1
    assert passes[0]["Resource"] == [f"arn:aws:iam::{rendered.ACCOUNT}:role/jitrunners-runner"]
    assert rendered.conditions(passes[0])["iam:PassedToService"] == ["ec2.amazonaws.com"]


def test_runner_role_reads_only_its_own_jit_parameter() -> None:
    doc = rendered.documents().runner_policies["own-jit-config"]
    jit = f"arn:aws:ssm:{rendered.REGION}:{rendered.ACCOUNT}:parameter/jitrunners/jit/*"
    allows = [st for st in rendered.statements(doc) if st["Effect"] == "Allow"]
    ssm = [st for st in allows if any(a.startswith("ssm:") for a in st["Action"])]
    assert len(ssm) == 1
    assert ssm[0]["Action"] == ["ssm:GetParameter"]  # scale-down deletes it
    assert ssm[0]["Resource"] == [jit]
    # aws:ResourceTag (the key the Service Authorization Reference lists for parameters), matched
    # against the IAM policy variable filled from the instance profile's credentials.
    tag_key = "aws:ResourceTag/jitrunners:instance-arn"
    assert rendered.conditions(ssm[0])[tag_key] == ["${ec2:SourceInstanceARN}"]
    denies = {st["Sid"]: st for st in rendered.statements(doc) if st["Effect"] == "Deny"}
    other = denies["DenyOtherInstancesJitConfigs"]
    assert {"ssm:GetParameter", "ssm:GetParameters", "ssm:DeleteParameter"} <= set(other["Action"])
    assert other["Condition"]["StringNotEquals"][tag_key] == "${ec2:SourceInstanceARN}"
    assert denies["DenyJitConfigsByPath"]["Action"] == ["ssm:GetParametersByPath"]
    secrets = denies["DenySecretsConfigAndState"]
    assert secrets["Action"] == ["ssm:*"]
    for path in ("secrets", "config", "state"):
        base = f"arn:aws:ssm:{rendered.REGION}:{rendered.ACCOUNT}:parameter/jitrunners/{path}"
        assert {base, base + "/*"} <= set(secrets["Resource"])
    decrypt = next(st for st in allows if st["Action"] == ["kms:Decrypt"])
    assert rendered.conditions(decrypt)["kms:EncryptionContext:PARAMETER_ARN"] == [jit]


def test_runner_role_does_not_get_the_managed_ssm_core_policy() -> None:
    """AmazonSSMManagedInstanceCore allows ssm:GetParameter on "*": every JIT config."""
    attachments = tf.blocks("resource", "aws_iam_role_policy_attachment")
    assert not [a for a in attachments.values() if "AmazonSSMManagedInstanceCore" in str(a)]
    for path in tf.tf_files():
        if path.parent == tf.TERRAFORM:
            assert "policy/AmazonSSMManagedInstanceCore" not in path.read_text(), path


def test_kill_switch_zeroes_webhook_and_scale_up_and_disables_the_event_source() -> None:
    reserved = tf.locals_()["reserved_concurrency"]
    for key in ("webhook", "scale-up"):
        assert reserved[key].startswith("${local.kill_switch ? 0 :"), key
    mapping = tf.blocks("resource", "aws_lambda_event_source_mapping")["scale_up"]
    assert mapping["enabled"] == "${!local.kill_switch}"
    assert mapping["tags"] == "${local.tags}"  # the budget guard may pause only tagged mappings
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["scaling_config"][0]["maximum_concurrency"] == (
        "${var.scale_up_maximum_concurrency}"
    )
    precondition = mapping["lifecycle"][0]["precondition"][0]["condition"]
    assert "local.scale_up_reserved >= var.scale_up_maximum_concurrency" in precondition


def test_queues_retention_redrive_visibility_and_encryption() -> None:
    queues = tf.blocks("resource", "aws_sqs_queue")
    loc = tf.locals_()

    def seconds(expr: str) -> int:
        return int(eval(expr.strip("${}"), {"__builtins__": {}}))  # noqa: S307 - literal arithmetic

    assert seconds(str(loc["queue_retention_s"])) >= 24 * 3600
    assert seconds(str(loc["dlq_retention_s"])) > seconds(str(loc["queue_retention_s"]))
    assert queues["jobs"]["visibility_timeout_seconds"] == "${6 * var.scale_up_timeout_s}"
    assert queues["teardown"]["visibility_timeout_seconds"] == (
        '${6 * local.functions["scale-down"].timeout}'
    )
    assert "teardown_dlq.arn" in queues["teardown"]["redrive_policy"]
    assert (
        "maxReceiveCount = var.scale_down_max_receive_count" in queues["teardown"]["redrive_policy"]
    )
    assert "maxReceiveCount = var.max_receive_count" in queues["jobs"]["redrive_policy"]
    assert (
        "var.max_receive_count >= 5"
        in tf.variables()["max_receive_count"]["validation"][0]["condition"]
    )
    for name, queue in queues.items():
        assert queue["kms_master_key_id"] == "${local.kms_key_arn}", name


def test_launch_templates_require_imdsv2_and_encrypt_a_gp3_root_without_public_ip() -> None:
    lt = tf.blocks("resource", "aws_launch_template")["runner"]
    md = lt["metadata_options"][0]
    assert md["http_tokens"] == "required"
    assert md["http_put_response_hop_limit"] == 1
    ebs = lt["block_device_mappings"][0]["ebs"][0]
    assert ebs["encrypted"] is True
    assert ebs["volume_type"] == "gp3"
    nic = lt["network_interfaces"][0]
    assert nic["associate_public_ip_address"] == "${each.value.associate_public_ip}"
    template_type = tf.variables()["runner_templates"]["type"]
    assert "associate_public_ip = optional(bool, false)" in template_type
    assert lt["iam_instance_profile"][0]["arn"] == "${aws_iam_instance_profile.runner.arn}"


def test_runner_templates_variable_covers_the_design_document() -> None:
    """Every DESIGN §2 field reaches the document the Lambdas read, and nothing else does."""
    templates = json.loads(TEMPLATES_FILE.read_text())
    templates[0]["pool"] = {"hot": 1}  # optional fields appear only where set
    document = rendered.render(templates).templates_document
    keys = {key for template in document for key in template}
    assert keys == set(config._FIELDS)
    template_type = tf.variables()["runner_templates"]["type"]
    variable_keys = set(re.findall(r"(\w+) = ", template_type.split("object(", 1)[1]))
    assert set(config._FIELDS) - {"launch_template"} <= variable_keys


def test_linux_user_data_fits_the_16_kb_limit() -> None:
    template = (tf.TERRAFORM / "templates" / "user-data.sh.tftpl").read_text()
    scripts = tf.ROOT / "runner_scripts"
    # Terraform's base64gzip(): gzip at the default level, then base64.
    size = len(template) + sum(
        len(base64.b64encode(gzip.compress((scripts / name).read_bytes(), mtime=0)))
        for name in ("bootstrap.sh", "start-runner.sh")
    )
    assert size + 1024 < 16384  # headroom for extra_user_data and values


def test_every_variable_and_output_is_described_and_typed() -> None:
    for name, var in tf.variables().items():
        assert var.get("description"), name
        assert var.get("type"), name
    for name, out in tf.outputs().items():
        assert out.get("description"), name
    assert {"webhook_url", "job_queue_url", "dlq_url", "function_names", "log_groups"} <= set(
        tf.outputs()
    )


def test_secrets_are_secure_strings_under_the_configurable_key() -> None:
    params = tf.blocks("resource", "aws_ssm_parameter")
    plain = {"runner_templates", "kill_switch"}  # configuration, no secret
    secrets = {k: v for k, v in params.items() if k not in plain}
    assert len(secrets) == 7  # 6, and the further GitHub Apps' keys (one resource, for_each)
    for name, param in secrets.items():
        assert param["type"] == "SecureString", name
        assert param["key_id"] == "${local.kms_key_arn}", name
    for name in ("webhook_secret", "github_app_private_key", "github_token"):
        assert tf.variables()[name]["sensitive"] is True


def test_log_groups_have_retention() -> None:
    for name, group in tf.blocks("resource", "aws_cloudwatch_log_group").items():
        assert group["retention_in_days"] == "${var.log_retention_days}", name


def test_module_readme_tables_are_generated_from_the_code() -> None:
    assert tfdocs.main(["--check"]) == 0, "run `make tf-docs`"
    rendered = tfdocs.render()
    for name in [*tf.variables(), *tf.outputs()]:
        assert f"| `{name}` |" in rendered


def test_every_checkov_skip_carries_a_reason() -> None:
    skips = 0
    for path in tf.tf_files():
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                skips += 1
                match = re.search(r"checkov:skip=(CKV2?_AWS_\d+):(.+)$", line)
                assert match, f"{path}: {line.strip()}"
                assert len(match.group(2).split()) >= 5, f"{path}: reason too short: {line}"
    assert skips > 0


def test_windows_user_data_fits_the_16_kb_limit() -> None:
    template = (tf.TERRAFORM / "templates" / "user-data.ps1.tftpl").read_text()
    scripts = tf.ROOT / "runner_scripts"
    size = len(template) + sum(
        len(base64.b64encode((scripts / name).read_bytes()))
        for name in ("bootstrap.ps1", "start-runner.ps1")
    )
    assert size + 1024 < 16384


def test_api_routes_post_webhook_with_stage_throttling() -> None:
    route = tf.blocks("resource", "aws_apigatewayv2_route")["webhook"]
    assert route["route_key"] == "POST /webhook"
    stage = tf.blocks("resource", "aws_apigatewayv2_stage")["default"]
    throttling = stage["default_route_settings"][0]
    assert throttling["throttling_burst_limit"] == "${var.api_throttling_burst_limit}"
    assert throttling["throttling_rate_limit"] == "${var.api_throttling_rate_limit}"
    assert stage["access_log_settings"]


def test_events_reach_scale_down_and_schedules_drive_redrive_and_housekeeper() -> None:
    rules = tf.locals_()["event_rules"]
    patterns = {k: str(v["pattern"]) for k, v in rules.items()}
    assert rules["command-finished"]["target"] == "teardown"
    assert "EC2 Command Invocation Status-change Notification" in patterns["command-finished"]
    assert "EC2 Spot Instance Interruption Warning" in patterns["spot-interruption"]
    assert "EC2 Instance State-change Notification" in patterns["instance-stopped"]
    assert "terminated" in patterns["instance-stopped"]
    assert "stopped" in patterns["instance-stopped"]
    assert {rules[k]["target"] for k in ("spot-interruption", "instance-stopped")} == {"teardown"}
    assert rules["redrive"]["schedule"] == "${var.redrive_schedule}"
    assert rules["housekeeper"]["schedule"] == "${var.housekeeper_schedule}"
    target = tf.blocks("resource", "aws_cloudwatch_event_target")["this"]
    assert target["dead_letter_config"][0]["arn"] == "${aws_sqs_queue.events_dlq.arn}"
    assert "aws_sqs_queue.teardown.arn" in target["arn"]
    # No Lambda permission for a rule whose target is the queue.
    assert "teardown" in str(tf.blocks("resource", "aws_lambda_permission")["events"]["for_each"])


def test_scale_down_reads_the_teardown_queue_in_batches_with_partial_failures() -> None:
    mapping = tf.blocks("resource", "aws_lambda_event_source_mapping")["scale_down"]
    assert mapping["event_source_arn"] == "${aws_sqs_queue.teardown.arn}"
    assert mapping["function_name"] == '${aws_lambda_alias.live["scale-down"].arn}'
    assert mapping["batch_size"] == "${var.scale_down_batch_size}"
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["scaling_config"][0]["maximum_concurrency"] == (
        "${var.scale_down_maximum_concurrency}"
    )
    assert "scale-down" not in str(tf.locals_()["async_functions"])
    variables = tf.variables()
    assert variables["scale_down_batch_size"]["default"] == 50
    assert "<= 1000" in variables["scale_down_batch_size"]["validation"][0]["condition"]


@pytest.mark.parametrize(
    ("batch_size", "window_s", "expected"),
    [(10, 0, 0), (50, 0, 1), (10, 2, 2), (50, 5, 5), (1, 1, 1)],
)
def test_scale_up_s_batching_window_is_the_variable_and_at_least_1_above_10_records(
    tmp_path: Path, batch_size: int, window_s: int, expected: int
) -> None:
    """The mapping's window, as terraform evaluates the module's expression: the variable, raised
    to 1 where AWS requires it (a batch above 10 records)."""
    import shutil
    import subprocess

    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not on PATH")
    mapping = tf.blocks("resource", "aws_lambda_event_source_mapping")["scale_up"]
    expression = str(mapping["maximum_batching_window_in_seconds"])
    assert expression.startswith("${"), expression
    assert expression.endswith("}"), expression
    shutil.copy(tf.TERRAFORM / "variables.tf", tmp_path / "variables.tf")
    done = subprocess.run(
        [terraform, "console", "-no-color", "-var", f"scale_up_batch_size={batch_size}",
         "-var", f"scale_up_batching_window_s={window_s}"],
        input=expression[2:-1] + "\n", capture_output=True, text=True, cwd=tmp_path,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.stdout.strip() == str(expected), done.stdout + done.stderr


def test_only_our_teardown_rules_may_send_to_the_teardown_queue() -> None:
    """The rendered queue policies (documents.tf): EventBridge may send to the teardown queue for
    the three rules that target it, and to no other queue but the events DLQ."""
    docs = rendered.documents()
    arns = rendered.deployed(json.loads(TEMPLATES_FILE.read_text()))
    teardown_rules = ("command-finished", "spot-interruption", "instance-stopped")

    def senders(queue: str) -> list[str]:
        allowed = [
            st
            for st in docs.queue_policies[queue]["Statement"]
            if st["Effect"] == "Allow"
            and st.get("Principal") == {"Service": "events.amazonaws.com"}
        ]
        return sorted(v for st in allowed for v in st["Condition"]["ArnEquals"]["aws:SourceArn"])

    assert senders("teardown") == sorted(arns["event_rule_arns"][k] for k in teardown_rules)
    assert senders("jobs") == senders("jobs_dlq") == senders("teardown_dlq") == []
    for queue in ("teardown", "teardown_dlq"):
        [deny] = [st for st in docs.queue_policies[queue]["Statement"] if st["Effect"] == "Deny"]
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_observability_ships_queries_dashboard_and_alarms() -> None:
    queries = tf.blocks("resource", "aws_cloudwatch_query_definition")
    assert set(queries) == {"job", "launch_failures", "zombies"}
    # One text for the saved query and `jitrunners trace`: the CLI's package data.
    read = re.fullmatch(r'\$\{file\("\$\{path\.module\}/(.+)"\)\}', queries["job"]["query_string"])
    assert read, queries["job"]["query_string"]
    assert "job_id = 0" in (tf.TERRAFORM / read.group(1)).read_text()
    alarms = tf.blocks("resource", "aws_cloudwatch_metric_alarm")
    assert set(alarms) == {
        "dlq_not_empty",
        "launch_failures",
        "zombies",
        "webhook_errors",
        "webhook_secret_not_configured",
        "budget_guard",
        "pool_empty",
    }
    assert alarms["pool_empty"]["for_each"] == "${local.pool_alarms}"
    assert alarms["pool_empty"]["alarm_actions"] == "${local.alarm_actions}"
    assert "4xx" in str(alarms["webhook_errors"]["for_each"])
    assert "5xx" in str(alarms["webhook_errors"]["for_each"])
    assert tf.blocks("resource", "aws_cloudwatch_dashboard")["this"]
    assert tf.blocks("resource", "aws_sns_topic")["alarms"]["count"] == (
        "${var.create_sns_topic ? 1 : 0}"
    )


def test_alarms_and_dashboard_watch_metrics_the_code_emits() -> None:
    """A renamed metric must not leave an alarm silently watching nothing."""
    emitted = set()
    for path in (tf.ROOT / "lambdas").rglob("*.py"):
        emitted |= set(re.findall(r'\b(?:count|observe)\(\s*"([A-Za-z]+)"', path.read_text()))
    text = (tf.TERRAFORM / "observability.tf").read_text()
    watched = set(re.findall(r'metric_name\s*=\s*"([A-Za-z]+)"', text))
    watched |= set(re.findall(r'\bmetric\s*=\s*"([A-Za-z]+)"', text))  # for_each alarm tables
    dashboard = re.search(r"for name in \[([^\]]*)\]", text)
    assert dashboard
    watched |= set(re.findall(r'"([A-Za-z]+)"', dashboard.group(1)))
    # SEARCH expressions: MetricName=\"X\" inline, and the pool searches' table (pools.tf).
    watched |= set(re.findall(r'MetricName=\\"([A-Za-z]+)\\"', text))
    pools = (tf.TERRAFORM / "pools.tf").read_text()
    table = re.search(r"for name, dims in \{([^}]*)\}", pools)
    assert table
    watched |= set(re.findall(r"^\s*([A-Za-z]+)\s*=", table.group(1), re.MULTILINE))
    aws_metrics = {"ApproximateNumberOfMessagesVisible", "Errors", "Throttles", "4xx", "5xx"}
    custom = {m for m in watched if m not in aws_metrics}
    assert {"LaunchFailed", "Zombies", "KillSwitchEngaged", "SpotOnlyEngaged"} <= custom
    assert {"JobCost", "QueueToRunnerLatency", "PoolSize", "PoolDeficit"} <= custom
    assert custom - emitted == set()


def test_runners_reach_https_only_by_default() -> None:
    """Plain HTTP egress is opt-in (security review of 824236b)."""
    assert tf.variables()["runner_egress_ports"]["default"] == [443]


def test_delivery_claim_table_matches_what_the_webhook_writes() -> None:
    from jitrunners.aws import deliveries

    table = tf.blocks("resource", "aws_dynamodb_table")["deliveries"]
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    assert table["hash_key"] == deliveries.KEY
    assert table["ttl"][0] == {"attribute_name": deliveries.TTL_ATTRIBUTE, "enabled": True}
    assert table["server_side_encryption"][0] == {
        "enabled": True,
        "kms_key_arn": "${local.kms_key_arn}",
    }
    main = (tf.TERRAFORM / "main.tf").read_text()
    assert re.search(r"DELIVERIES_TABLE\s*=\s*aws_dynamodb_table\.deliveries\.name", main)


def test_app_mode_without_allowed_owners_is_refused_by_variable_validation(tmp_path: Path) -> None:
    """Anyone may install a public GitHub App: an App deployment must name the owners it serves."""
    import shutil
    import subprocess

    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not on PATH")
    shutil.copy(tf.TERRAFORM / "variables.tf", tmp_path / "variables.tf")

    def console(*args: str) -> str:
        # `terraform console` reads stdin and exits 0 even on an error: read what it printed.
        done = subprocess.run(
            [terraform, "console", "-no-color", *args],
            input="var.allowed_owners\n",
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        return done.stdout + done.stderr

    refusal = "allowed_owners must not be empty in GitHub App mode"
    assert refusal in console("-var", "github_app_id=123")
    named = console("-var", "github_app_id=123", "-var", 'allowed_owners=["acme"]')
    assert refusal not in named
    assert '"acme"' in named
    assert refusal not in console("-var", "github_app_id=")  # token mode: empty means all
    assert 'required_version = ">= 1.9"' in (tf.TERRAFORM / "versions.tf").read_text()


# The queues each function's code sends to (the environment variable it reads the URL from), as
# the code does it: scale-up re-queues launches and parks a launch that never came online in
# the DLQ (provisioning/start.py `_give_up`); the grep keeps this list honest.
SENDS_TO = {"scale-up": ("jobs_queue_arn", "dlq_arn")}


@pytest.mark.parametrize("key", sorted(SENDS_TO))
def test_each_queue_a_function_sends_to_is_granted_by_resource(key: str) -> None:
    from devstack.iam.evaluator import Request, evaluate

    start = (tf.PACKAGE / "lifecycle" / "provisioning" / "start.py").read_text()
    assert "send_job(settings.dlq_url" in start  # the parking this guards
    docs = rendered.documents()
    arns = rendered.deployed(json.loads(TEMPLATES_FILE.read_text()))
    for queue in SENDS_TO[key]:
        request = Request(principal=f"role/{key}", action="sqs:SendMessage", resource=arns[queue])
        result = evaluate([docs.function_policies[key]], request)
        assert result.allowed, (key, queue, result)
