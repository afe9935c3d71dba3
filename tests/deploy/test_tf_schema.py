"""terraform/ and its examples against the aws provider's published schema (no provider download).

The schema comes from cdk-terrain's prebuilt aws bindings (scripts/aws_schema.py, `make
tf-schema`, which `make test` runs first). Without it these tests fail and say how to get it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scripts import aws_schema

from tests.deploy import tfschema


@pytest.fixture(scope="module")
def schema() -> tfschema.Schema:
    return tfschema.load_schema()


def _check(tmp_path: Path, schema: tfschema.Schema, text: str) -> list[str]:
    (tmp_path / "main.tf").write_text(text)
    return tfschema.check_module(tfschema.Module.load(tmp_path), schema)


def _one(findings: list[str], *needles: str) -> str:
    hits = [f for f in findings if all(n in f for n in needles)]
    assert len(hits) == 1, f"expected one finding with {needles}, got {findings}"
    return hits[0]


def test_the_module_and_examples_match_the_aws_provider_schema(schema: tfschema.Schema) -> None:
    findings = tfschema.check_all(schema)
    assert not findings, "\n".join(findings)


def test_every_module_directory_is_checked() -> None:
    names = {p.relative_to(tfschema.ROOT).as_posix() for p in tfschema.module_dirs()}
    assert {"terraform", "terraform/examples/org-app-spot"} <= names
    assert all(n.startswith("terraform") for n in names)


def test_the_schema_is_the_pinned_provider(schema: tfschema.Schema) -> None:
    assert schema.source == "hashicorp/aws"
    assert schema.version.startswith("6.")
    assert schema.root("resource", "aws_lambda_function") is not None
    assert schema.root("data", "aws_iam_policy_document") is not None


def test_a_missing_schema_fails_with_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(tfschema.SchemaUnavailableError, match=r"make tf-schema.*PyPI"):
        tfschema.load_schema(tmp_path / "aws.json")


def test_a_schema_from_another_pin_is_refused(tmp_path: Path) -> None:
    stale = tmp_path / "aws.json"
    stale.write_text(json.dumps({"package": "cdktn-provider-aws==1.0.0", "format": 1}))
    with pytest.raises(tfschema.SchemaUnavailableError, match="make tf-schema"):
        tfschema.load_schema(stale)


# ---------------------------------------------------------------------------------------------
# Teeth: each kind of mistake fails, naming file, line, resource and argument.


def test_an_unknown_argument_fails(tmp_path: Path, schema: tfschema.Schema) -> None:
    findings = _check(
        tmp_path,
        schema,
        """
resource "aws_sqs_queue" "jobs" {
  name                 = "jobs"
  visibility_timeout_s = 30
}
""",
    )
    message = _one(findings, "visibility_timeout_s")
    assert message.startswith(f"{tmp_path / 'main.tf'}:2: aws_sqs_queue.jobs: ")
    assert "unknown argument (aws provider 6." in message
    assert "did you mean visibility_timeout_seconds?" in message


def test_a_misplaced_block_fails_and_says_where_it_belongs(
    tmp_path: Path, schema: tfschema.Schema
) -> None:
    findings = _check(
        tmp_path,
        schema,
        """
resource "aws_launch_template" "runner" {
  name = "runner"

  ebs {
    volume_size = 40
  }
}
""",
    )
    message = _one(findings, "aws_launch_template.runner", "ebs")
    assert "main.tf:2:" in message
    assert "unknown block" in message
    assert "block_device_mappings.ebs" in message


def test_a_missing_required_argument_fails(tmp_path: Path, schema: tfschema.Schema) -> None:
    findings = _check(
        tmp_path,
        schema,
        """
resource "aws_sqs_queue_policy" "jobs" {
  count  = 0
  policy = "{}"
}
""",
    )
    assert findings == [
        f"{tmp_path / 'main.tf'}:2: aws_sqs_queue_policy.jobs: queue_url: missing required argument"
    ]


def test_nested_and_dynamic_blocks_are_checked(tmp_path: Path, schema: tfschema.Schema) -> None:
    findings = _check(
        tmp_path,
        schema,
        """
resource "aws_launch_template" "runner" {
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_sise = 40
    }
  }
  dynamic "network_interfaces" {
    for_each = [1]
    content {
      device_index = network_interfaces.value
      subnet       = "subnet-1"
    }
  }
  dynamic "monitor" {
    for_each = [1]
    content {
      enabled = true
    }
  }
}
""",
    )
    _one(findings, "block_device_mappings.ebs.volume_sise: unknown argument")
    _one(findings, "network_interfaces.subnet: unknown argument", "did you mean subnet_id?")
    _one(findings, 'dynamic.monitor: "monitor" is not a block here')
    assert len(findings) == 3, findings


def test_blocks_and_arguments_are_not_interchangeable(
    tmp_path: Path, schema: tfschema.Schema
) -> None:
    findings = _check(
        tmp_path,
        schema,
        """
resource "aws_lambda_function" "this" {
  function_name = "f"
  role          = "arn"
  environment   = { variables = {} }
  tags {
    team = "x"
  }
  tracing_config {
    mode = "Active"
  }
  tracing_config {
    mode = "PassThrough"
  }
}
""",
    )
    _one(findings, "environment is a block, not an argument")
    _one(findings, "tags is an argument, not a block")
    _one(findings, "tracing_config: at most one block allowed, found 2")
    assert len(findings) == 3, findings


def test_meta_arguments_are_allowed_where_terraform_allows_them(
    tmp_path: Path, schema: tfschema.Schema
) -> None:
    findings = _check(
        tmp_path,
        schema,
        """
resource "aws_sns_topic" "alarms" {
  count      = 1
  provider   = aws.other
  depends_on = []
  name       = "alarms"
  lifecycle {
    create_before_destroy = true
    ignore_changes        = [tags]
    precondition {
      condition     = true
      error_message = "x"
    }
  }
}

data "aws_region" "current" {
  for_each = toset(["a"])
  lifecycle {
    postcondition {
      condition     = true
      error_message = "x"
    }
    prevent_destroy = true
  }
}
""",
    )
    assert findings == [
        f"{tmp_path / 'main.tf'}:17: data.aws_region.current: lifecycle.prevent_destroy: "
        "not a lifecycle argument of a data block"
    ]


def test_attribute_lists_of_objects_may_be_written_as_blocks(
    tmp_path: Path, schema: tfschema.Schema
) -> None:
    findings = _check(
        tmp_path,
        schema,
        """
resource "aws_security_group" "sg" {
  ingress {
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_block  = ["10.0.0.0/8"]
  }
}
""",
    )
    message = _one(findings, "main.tf:2: aws_security_group.sg: ingress.cidr_block: unknown")
    assert "did you mean cidr_blocks" in message
    assert len(findings) == 1, findings


def test_unknown_types_and_provider_arguments_fail(tmp_path: Path, schema: tfschema.Schema) -> None:
    findings = _check(
        tmp_path,
        schema,
        """
provider "aws" {
  regoin = "eu-west-1"
}

data "aws_lambda_functionz" "x" {}

resource "terraform_data" "ignored" {
  input = 1
}
""",
    )
    _one(findings, "main.tf:2: provider aws: regoin: unknown argument", "did you mean region")
    _one(findings, "main.tf:6: data.aws_lambda_functionz.x: unknown data type")
    assert len(findings) == 2, findings


def test_required_providers_must_admit_the_checked_version(
    tmp_path: Path, schema: tfschema.Schema
) -> None:
    (tmp_path / "versions.tf").write_text(
        'terraform {\n  required_providers {\n    aws = { source = "hashicorp/aws", '
        'version = "~> 5.40" }\n  }\n}\n'
    )
    (tmp_path / "main.tf").write_text('resource "random_id" "x" {\n  byte_length = 4\n}\n')
    findings = tfschema.check_required_providers(tfschema.Module.load(tmp_path), schema)
    _one(findings, "versions.tf:1: terraform", "'random'", "does not declare")
    _one(findings, 'required_providers.aws.version "~> 5.40" excludes aws 6.')
    assert len(findings) == 2, findings


@pytest.mark.parametrize(
    ("constraint", "ok"),
    [
        (">= 5.40", True),
        (">= 5.40, < 6.0", False),
        ("~> 6.0", True),
        ("~> 6.28.1", False),
        ("~> 6.28.0", True),
        ("= 6.28.0", True),
        ("6.28.0", True),
        ("!= 6.28.0", False),
        ("> 6.28", False),
    ],
)
def test_version_constraints(constraint: str, ok: bool) -> None:
    assert tfschema.satisfies("6.28.0", constraint) is ok


def test_module_calls_pass_only_variables_and_all_required_ones(tmp_path: Path) -> None:
    child = tmp_path / "child"
    child.mkdir()
    (child / "variables.tf").write_text(
        'variable "needed" {\n  type = string\n}\n\n'
        'variable "optional" {\n  type    = number\n  default = 1\n}\n'
    )
    root = tmp_path / "root"
    root.mkdir()
    (root / "main.tf").write_text(
        'module "a" {\n  source   = "../child"\n  count    = 1\n  optinal  = 2\n}\n\n'
        'module "b" {\n  source = "../nowhere"\n}\n'
    )
    findings = tfschema.check_module_calls(tfschema.Module.load(root))
    _one(findings, "main.tf:1: module a", '"optinal" is not a variable of')
    _one(findings, "main.tf:1: module a", 'required variable "needed" is not set')
    _one(findings, "main.tf:7: module b", 'source "../nowhere" is not a directory')
    assert len(findings) == 3, findings


# ---------------------------------------------------------------------------------------------
# Reading the jsii assembly: Terraform names come from the docs anchors, not from camelCase.


def _prop(
    name: str, anchor: str, type_: object, *, block: bool = False, optional: bool = True
) -> dict[str, object]:
    registry = "https://registry.terraform.io/providers/hashicorp/aws/6.0.0/docs"
    link = f"{{@link {registry}/resources/x#{anchor} X#{anchor}}}"
    docs = (
        {"summary": f"{anchor} block.", "remarks": f"Docs at Terraform Registry: {link}"}
        if block
        else {"summary": f"Docs at Terraform Registry: {link}."}
    )
    return {"name": name, "docs": docs, "type": type_, "optional": optional}


def test_the_assembly_is_read_by_terraform_names_and_block_summaries() -> None:
    a = "@cdktn/provider-aws"
    registry = "https://registry.terraform.io/providers/hashicorp/aws/6.0.0/docs"
    config_param = {"name": "config", "type": {"fqn": f"{a}.x.XConfig"}}
    assembly = {
        "name": a,
        "types": {
            f"{a}.provider.AwsProvider": {
                "kind": "class",
                "base": "cdktf.TerraformProvider",
                "docs": {"summary": f"Represents a {{@link {registry[:-5]} aws}}."},
                "initializer": {"parameters": [{"name": "config", "type": {"fqn": f"{a}.p.P"}}]},
            },
            f"{a}.p.P": {"kind": "interface", "properties": []},
            f"{a}.x.X": {
                "kind": "class",
                "base": "cdktf.TerraformResource",
                "docs": {"summary": f"Represents a {{@link {registry}/resources/x aws_x}}."},
                "initializer": {"parameters": [config_param]},
            },
            f"{a}.x.XConfig": {
                "kind": "interface",
                "properties": [
                    _prop("selfAttribute", "self", {"primitive": "boolean"}, optional=False),
                    _prop("addressLine1", "address_line_1", {"primitive": "string"}),
                    _prop("equalTo", "equals", {"primitive": "string"}),
                    _prop("rule", "rule", {"fqn": f"{a}.x.XRule"}, block=True),
                    _prop(
                        "item",
                        "item",
                        {
                            "union": {
                                "types": [
                                    {"fqn": "cdktf.IResolvable"},
                                    {
                                        "collection": {
                                            "kind": "array",
                                            "elementtype": {"fqn": f"{a}.x.XRule"},
                                        }
                                    },
                                ]
                            }
                        },
                    ),
                    _prop("deep", "deep", {"primitive": "any"}, block=True),
                ],
            },
            f"{a}.x.XRule": {"kind": "interface", "properties": []},
        },
    }
    out = aws_schema.distil(assembly)
    assert out["source"] == "hashicorp/aws"
    assert out["version"] == "6.0.0"
    config = out["structs"][out["resource"]["aws_x"]]
    assert config["arguments"] == {
        "self": True,
        "address_line_1": False,
        "equals": False,
        "item": False,
    }
    assert config["objects"] == {"item": {"single": False, "struct": "x.XRule"}}
    assert config["blocks"] == {
        "rule": {"required": False, "single": True, "struct": "x.XRule"},
        "deep": {"required": False, "single": False, "struct": None},
    }
