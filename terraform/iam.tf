# One least-privilege role per function, and the runner instances' role.
# tests/deploy/test_terraform.py checks each function's actions against the AWS calls its code makes.

locals {
  runner_subnet_ids         = distinct(concat(var.subnet_ids, flatten([for t in var.runner_templates : t.subnet_ids])))
  runner_security_group_ids = distinct(concat([aws_security_group.runner.id], flatten([for t in var.runner_templates : t.security_group_ids])))

  arn = {
    jit_params     = "${local.ssm_param_arn_prefix}${local.jit_param_path}*"
    templates      = "${local.ssm_param_arn_prefix}${local.templates_param_name}"
    webhook_secret = "${local.ssm_param_arn_prefix}${local.webhook_secret_name}"
    github_secret  = "${local.ssm_param_arn_prefix}${local.github_secret_name}"
    ec2            = "arn:${local.partition}:ec2:${local.region}:${local.account_id}"
    ec2_images     = "arn:${local.partition}:ec2:${local.region}::image/*"
    jit_path       = "${local.ssm_param_arn_prefix}${trimsuffix(local.jit_param_path, "/")}"
    # Records of re-runs and redeliveries (lambdas/jitrunners/aws/markers.py).
    state_params = "${local.ssm_param_arn_prefix}/${local.prefix}/state/*"
    state_path   = "${local.ssm_param_arn_prefix}/${local.prefix}/state"
    ssm_documents = [
      "arn:${local.partition}:ssm:${local.region}::document/AWS-RunShellScript",
      "arn:${local.partition}:ssm:${local.region}::document/AWS-RunPowerShellScript",
    ]
  }
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each = local.functions

  name               = "${local.function_names[each.key]}-lambda"
  description        = "${local.prefix} ${each.key} function"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

# What every function needs: its own log group, tracing, the async DLQ where it has one.
data "aws_iam_policy_document" "lambda_base" {
  for_each = local.functions

  statement {
    sid       = "OwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function[each.key].arn}:*"]
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"] # X-Ray has no resource-level permissions
  }

  dynamic "statement" {
    for_each = contains(local.async_functions, each.key) ? [1] : []
    content {
      sid       = "AsyncDeadLetterQueue"
      actions   = ["sqs:SendMessage", "kms:GenerateDataKey", "kms:Decrypt"]
      resources = [aws_sqs_queue.events_dlq.arn, local.kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "lambda_base" {
  for_each = local.functions

  name   = "base"
  role   = aws_iam_role.function[each.key].id
  policy = data.aws_iam_policy_document.lambda_base[each.key].json
}

locals {
  function_policies = {
    "webhook"     = data.aws_iam_policy_document.webhook.json
    "scale-up"    = data.aws_iam_policy_document.scale_up.json
    "scale-down"  = data.aws_iam_policy_document.scale_down.json
    "redrive"     = data.aws_iam_policy_document.redrive.json
    "housekeeper" = data.aws_iam_policy_document.housekeeper.json
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions

  name   = "function"
  role   = aws_iam_role.function[each.key].id
  policy = local.function_policies[each.key]
}

data "aws_iam_policy_document" "webhook" {
  statement {
    sid       = "EnqueueLaunch"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.jobs.arn]
  }

  statement {
    sid       = "ReadSecretAndTemplates"
    actions   = ["ssm:GetParameter"]
    resources = [local.arn.webhook_secret, local.arn.templates]
  }

  statement {
    sid       = "DecryptSecretEncryptQueue"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
  }
}

data "aws_iam_policy_document" "scale_up" {
  statement {
    sid = "ConsumeAndEnqueue"
    actions = [
      "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes", "sqs:SendMessage",
    ]
    resources = [aws_sqs_queue.jobs.arn]
  }

  statement {
    sid       = "ReadConfigAndGitHubCredentials"
    actions   = ["ssm:GetParameter"]
    resources = [local.arn.templates, local.arn.github_secret]
  }

  statement {
    sid       = "JitConfigParameters"
    actions   = ["ssm:PutParameter", "ssm:AddTagsToResource", "ssm:GetParameter", "ssm:DeleteParameter"]
    resources = [local.arn.jit_params]
  }

  # Re-run checks (a job failed on one of our runners) share scale-down's re-run records.
  statement {
    sid       = "RerunRecords"
    actions   = ["ssm:PutParameter", "ssm:AddTagsToResource", "ssm:GetParameter", "ssm:DeleteParameter"]
    resources = [local.arn.state_params]
  }

  statement {
    sid       = "KeyForSecretsQueueAndJitConfigs"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
  }

  # CreateFleet (instant) and RunInstances: new instances, volumes and interfaces must be created
  # with our prefix tag; the launch templates must be ours.
  statement {
    sid     = "LaunchTaggedInstances"
    actions = ["ec2:CreateFleet", "ec2:RunInstances"]
    resources = [
      "${local.arn.ec2}:instance/*",
      "${local.arn.ec2}:volume/*",
    ]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/jitrunners:prefix"
      values   = [local.prefix]
    }
  }

  statement {
    sid       = "LaunchFromOurTemplates"
    actions   = ["ec2:CreateFleet", "ec2:RunInstances"]
    resources = [for lt in aws_launch_template.runner : lt.arn]
  }

  # Created with the instance and deleted with it; our subnets and security groups only.
  statement {
    sid     = "LaunchIntoOurNetwork"
    actions = ["ec2:CreateFleet", "ec2:RunInstances"]
    resources = concat(
      [for s in local.runner_subnet_ids : "${local.arn.ec2}:subnet/${s}"],
      [for g in local.runner_security_group_ids : "${local.arn.ec2}:security-group/${g}"],
      [
        local.arn.ec2_images,
        "${local.arn.ec2}:network-interface/*",
        "${local.arn.ec2}:spot-instances-request/*",
        "${local.arn.ec2}:fleet/*",
        "${local.arn.ec2}:key-pair/*",
      ],
    )
  }

  statement {
    sid       = "TagAtCreation"
    actions   = ["ec2:CreateTags"]
    resources = ["${local.arn.ec2}:*/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateFleet", "RunInstances"]
    }
  }

  statement {
    sid       = "TagAndTerminateOurInstances"
    actions   = ["ec2:CreateTags", "ec2:TerminateInstances"]
    resources = ["${local.arn.ec2}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/jitrunners:prefix" # ours: tagged at creation
      values   = [local.prefix]
    }
  }

  statement {
    sid       = "DescribeInstances"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"] # Describe* has no resource-level permissions
  }

  statement {
    sid       = "PassRunnerRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.runner.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com"]
    }
  }

  statement {
    sid       = "SpotServiceLinkedRole"
    actions   = ["iam:CreateServiceLinkedRole"]
    resources = ["arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"]
    condition {
      test     = "StringEquals"
      variable = "iam:AWSServiceName"
      values   = ["spot.amazonaws.com"]
    }
  }

  statement {
    sid       = "StartRunnerOnOurInstances"
    actions   = ["ssm:SendCommand"]
    resources = ["${local.arn.ec2}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "ssm:resourceTag/jitrunners:prefix"
      values   = [local.prefix]
    }
  }

  statement {
    sid       = "StartRunnerDocuments"
    actions   = ["ssm:SendCommand"]
    resources = local.arn.ssm_documents
  }

  statement {
    sid       = "FindExistingJitConfig"
    actions   = ["ssm:DescribeParameters"]
    resources = ["*"] # DescribeParameters has no resource-level permissions
  }

  # A retried start looks for the runner command an earlier delivery already sent.
  statement {
    sid       = "FindSentRunnerCommand"
    actions   = ["ssm:ListCommands"]
    resources = ["*"] # ListCommands has no resource-level permissions
  }
}

data "aws_iam_policy_document" "scale_down" {
  statement {
    sid       = "ReadConfigAndGitHubCredentials"
    actions   = ["ssm:GetParameter"]
    resources = [local.arn.templates, local.arn.github_secret]
  }

  statement {
    sid       = "DeleteJitConfigs"
    actions   = ["ssm:DeleteParameter"]
    resources = [local.arn.jit_params]
  }

  statement {
    sid       = "StateRecords"
    actions   = ["ssm:PutParameter", "ssm:AddTagsToResource", "ssm:GetParameter", "ssm:DeleteParameter"]
    resources = [local.arn.state_params]
  }

  statement {
    sid       = "RelaunchJobs"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.jobs.arn]
  }

  statement {
    sid       = "DecryptSecrets"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
  }

  statement {
    sid       = "DescribeInstances"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"] # no resource-level permissions
  }

  statement {
    sid       = "TerminateOurInstances"
    actions   = ["ec2:TerminateInstances"]
    resources = ["${local.arn.ec2}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/jitrunners:prefix" # ours: tagged at creation
      values   = [local.prefix]
    }
  }
}

data "aws_iam_policy_document" "redrive" {
  statement {
    sid       = "DrainDeadLetterQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
    resources = [aws_sqs_queue.jobs_dlq.arn]
  }

  statement {
    sid       = "RequeueJobs"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.jobs.arn, aws_sqs_queue.jobs_dlq.arn]
  }

  statement {
    sid       = "ReadConfigAndGitHubCredentials"
    actions   = ["ssm:GetParameter"]
    resources = [local.arn.templates, local.arn.github_secret]
  }

  statement {
    sid       = "KeyForQueuesAndSecrets"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
  }
}

data "aws_iam_policy_document" "housekeeper" {
  statement {
    sid       = "ReadConfigAndGitHubCredentials"
    actions   = ["ssm:GetParameter"]
    resources = [local.arn.templates, local.arn.github_secret]
  }

  statement {
    sid       = "DeleteOrphanJitConfigs"
    actions   = ["ssm:DeleteParameter"]
    resources = [local.arn.jit_params]
  }

  statement {
    sid       = "StateRecords"
    actions   = ["ssm:PutParameter", "ssm:AddTagsToResource", "ssm:GetParameter", "ssm:DeleteParameter", "ssm:GetParametersByPath"]
    resources = [local.arn.state_params, local.arn.state_path]
  }

  statement {
    sid       = "RelaunchJobs"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.jobs.arn]
  }

  statement {
    sid       = "DecryptSecrets"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
  }

  statement {
    sid       = "ListInstancesParametersCommands"
    actions   = ["ec2:DescribeInstances", "ssm:DescribeParameters", "ssm:GetCommandInvocation"]
    resources = ["*"] # no resource-level permissions
  }

  statement {
    sid       = "TerminateOurInstances"
    actions   = ["ec2:TerminateInstances"]
    resources = ["${local.arn.ec2}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/jitrunners:prefix" # ours: tagged at creation
      values   = [local.prefix]
    }
  }
}

################################################################################
# Runner instances
################################################################################

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "runner" {
  name               = "${local.prefix}-runner"
  description        = "${local.prefix} runner instances: SSM agent and their own JIT config only"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = local.tags
}

# Not AmazonSSMManagedInstanceCore: it grants ssm:GetParameter(s) on "*", which would let any runner
# read every other runner's JIT config. This is what the SSM agent needs for RunCommand, no more.
data "aws_iam_policy_document" "runner_ssm_agent" {
  # checkov:skip=CKV_AWS_111:The SSM agent's own APIs act on the calling instance and take no resource ARN; this is AmazonSSMManagedInstanceCore minus its parameter reads.
  # checkov:skip=CKV_AWS_356:Same statement: ec2messages, ssmmessages and the agent's ssm calls have no resource-level permissions.
  statement {
    sid = "SsmAgentCore"
    actions = [
      "ssm:UpdateInstanceInformation", "ssm:ListInstanceAssociations", "ssm:ListAssociations",
      "ssm:DescribeAssociation", "ssm:UpdateInstanceAssociationStatus", "ssm:UpdateAssociationStatus",
      "ssm:GetDocument", "ssm:DescribeDocument", "ssm:PutInventory", "ssm:PutComplianceItems",
      "ssm:PutConfigurePackageResult", "ssm:GetManifest", "ssm:GetDeployablePatchSnapshotForInstance",
      "ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage",
      "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply",
      "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
      "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel",
    ]
    resources = ["*"] # the agent's APIs act on the calling instance; no resource-level permissions
  }
}

resource "aws_iam_role_policy" "runner_ssm_agent" {
  name   = "ssm-agent"
  role   = aws_iam_role.runner.id
  policy = data.aws_iam_policy_document.runner_ssm_agent.json
}

# DESIGN 3b: an instance may read and delete only its own JIT parameter, tagged with its ARN;
# IAM fills ${ec2:SourceInstanceARN} from the instance profile's credentials.
data "aws_iam_policy_document" "runner" {
  # Belt and braces: whatever else is attached to the role (an operator's extra policy), no runner
  # reads or deletes a JIT parameter that is not tagged with its own ARN.
  statement {
    sid       = "DenyOtherInstancesJitConfigs"
    effect    = "Deny"
    actions   = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParameterHistory", "ssm:DeleteParameter", "ssm:DeleteParameters"]
    resources = [local.arn.jit_params]
    condition {
      test     = "StringNotEquals"
      variable = "ssm:resourceTag/jitrunners:instance-arn"
      values   = ["$${ec2:SourceInstanceARN}"]
    }
  }

  statement {
    sid       = "DenyJitConfigsByPath"
    effect    = "Deny"
    actions   = ["ssm:GetParametersByPath"]
    resources = [local.arn.jit_path, local.arn.jit_params]
  }

  statement {
    sid       = "OwnJitConfigOnly"
    actions   = ["ssm:GetParameter", "ssm:DeleteParameter"]
    resources = [local.arn.jit_params]
    condition {
      test     = "StringEquals"
      variable = "ssm:resourceTag/jitrunners:instance-arn"
      values   = ["$${ec2:SourceInstanceARN}"]
    }
  }

  statement {
    sid       = "DecryptJitConfigThroughSsm"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["ssm.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "RunCommandOutput"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = [aws_cloudwatch_log_group.runner_commands.arn, "${aws_cloudwatch_log_group.runner_commands.arn}:*"]
  }

  statement {
    sid       = "RunCommandOutputGroups"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
  }
}

resource "aws_iam_role_policy" "runner" {
  name   = "own-jit-config"
  role   = aws_iam_role.runner.id
  policy = data.aws_iam_policy_document.runner.json
}

resource "aws_iam_instance_profile" "runner" {
  name = "${local.prefix}-runner"
  role = aws_iam_role.runner.name
  tags = local.tags
}
