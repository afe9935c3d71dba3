# The Lambdas from the `make package` zip, their published versions and `live` aliases, their log
# groups, the kill switch and the SQS event source.

resource "aws_cloudwatch_log_group" "function" {
  # checkov:skip=CKV_AWS_338:Retention is the operator's choice (log_retention_days, default 30): these are operational logs; the audit trail is CloudTrail's.
  for_each = local.functions

  name              = "/aws/lambda/${local.function_names[each.key]}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_lambda_function" "this" {
  for_each = local.functions
  # checkov:skip=CKV_AWS_117:The functions call only public AWS and GitHub endpoints and reach no VPC resource; a VPC would add NAT cost and a failure point.
  # checkov:skip=CKV_AWS_272:The zip is built reproducibly by `make package` and its hash pinned by source_code_hash; code signing needs a signing profile outside this module.
  # checkov:skip=CKV_AWS_116:Async functions (redrive, housekeeper, budget-guard) get a dead-letter queue below; the webhook is invoked synchronously, scale-up and scale-down by SQS event sources (each queue has its own DLQ), where a Lambda DLQ never applies.

  function_name                  = local.function_names[each.key]
  description                    = each.value.description
  role                           = aws_iam_role.function[each.key].arn
  filename                       = var.lambda_package_path
  source_code_hash               = filebase64sha256(var.lambda_package_path)
  handler                        = each.value.handler
  runtime                        = var.lambda_runtime
  architectures                  = [var.lambda_architecture]
  memory_size                    = lookup(var.lambda_memory_size, each.key, 256)
  timeout                        = each.value.timeout
  reserved_concurrent_executions = local.reserved_concurrency[each.key]
  kms_key_arn                    = local.kms_key_arn
  # Each change of code or configuration is published as a new version; the `live` alias below
  # keeps serving the version it routes to until `jitrunners rollout` moves it.
  publish = true

  environment {
    variables = local.environment
  }

  logging_config {
    log_format = "Text" # Powertools writes the JSON lines itself
    log_group  = aws_cloudwatch_log_group.function[each.key].name
  }

  tracing_config {
    mode = var.tracing_mode
  }

  dynamic "dead_letter_config" {
    for_each = contains(local.async_functions, each.key) ? [aws_sqs_queue.events_dlq.arn] : []
    content {
      target_arn = dead_letter_config.value
    }
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.function, aws_iam_role_policy.lambda_base]
}

# What every trigger invokes (API Gateway, the SQS event source, EventBridge rules and schedules,
# the budget topic): never $LATEST. Created on the version this apply published; from then on
# `jitrunners rollout` owns which version(s) it routes to, with what weight, and its description
# (the rollout in progress), so Terraform ignores them (terraform/README.md "Canary rollouts").
resource "aws_lambda_alias" "live" {
  for_each = local.functions

  name             = local.live_alias
  description      = "Invoked by every trigger; moved by jitrunners rollout"
  function_name    = aws_lambda_function.this[each.key].function_name
  function_version = aws_lambda_function.this[each.key].version

  lifecycle {
    ignore_changes = [function_version, routing_config, description]
  }
}

resource "aws_lambda_function_event_invoke_config" "async" {
  for_each = local.async_functions

  function_name                = aws_lambda_function.this[each.key].function_name
  qualifier                    = aws_lambda_alias.live[each.key].name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 3600
}

resource "aws_lambda_event_source_mapping" "scale_up" {
  event_source_arn = aws_sqs_queue.jobs.arn
  function_name    = aws_lambda_alias.live["scale-up"].arn
  # The kill switch disables polling: a throttled poller would keep receiving and push queued jobs
  # toward maxReceiveCount and the DLQ (DESIGN 5b). Disabled, they wait in the queue.
  enabled                            = !local.kill_switch
  batch_size                         = var.scale_up_batch_size
  maximum_batching_window_in_seconds = max(var.scale_up_batching_window_s, var.scale_up_batch_size > 10 ? 1 : 0)
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.scale_up_maximum_concurrency
  }

  # The budget guard may pause only mappings tagged with the prefix (documents.tf).
  tags = local.tags

  lifecycle {
    precondition {
      condition     = local.kill_switch || local.scale_up_reserved >= var.scale_up_maximum_concurrency
      error_message = "scale_up_reserved_concurrency must be at least scale_up_maximum_concurrency: a throttled poller counts receives toward maxReceiveCount."
    }
  }
}

# Scale-down reads the EventBridge events about our instances from the teardown queue in batches:
# one DescribeInstances and one TerminateInstances per batch instead of per event.
resource "aws_lambda_event_source_mapping" "scale_down" {
  event_source_arn                   = aws_sqs_queue.teardown.arn
  function_name                      = aws_lambda_alias.live["scale-down"].arn
  batch_size                         = var.scale_down_batch_size
  maximum_batching_window_in_seconds = var.scale_down_batch_size > 10 ? 1 : 0
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.scale_down_maximum_concurrency
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = local.reserved_concurrency["scale-down"] >= var.scale_down_maximum_concurrency
      error_message = "scale_down_maximum_concurrency must be at most scale-down's reserved concurrency: a throttled poller counts receives toward maxReceiveCount."
    }
  }
}

# Kill switch (DESIGN 5b): `kill_switch = true`, or engaged at runtime by the budget guard or
# `jitrunners kill-switch on`, which record it under /<prefix>/state/guard/ (guardrail.py). The
# plan reads that record, so an apply keeps a runtime engagement instead of silently lifting it;
# only `jitrunners kill-switch off` removes it.
data "aws_ssm_parameters_by_path" "guard" {
  path = local.guard_path
}

locals {
  kill_switch = var.kill_switch || contains(data.aws_ssm_parameters_by_path.guard.names, local.kill_switch_record_name)
}

# What Terraform sets, for `jitrunners kill-switch off`: it restores these reserved concurrencies
# (-1: unreserved), and refuses while `kill_switch = true` holds the switch.
resource "aws_ssm_parameter" "kill_switch" {
  # checkov:skip=CKV2_AWS_34:A flag and two concurrency numbers, no secret; operators read it with jitrunners kill-switch, without the key.
  name        = local.kill_switch_setting_name
  description = "${local.prefix}: Terraform's kill switch setting, read by jitrunners kill-switch"
  type        = "String"
  value = jsonencode({
    kill_switch = var.kill_switch
    reserved_concurrency = {
      "webhook"  = var.webhook_reserved_concurrency
      "scale-up" = local.scale_up_reserved
    }
  })
  tags = local.tags
}
