# The five Lambdas from the `make package` zip, their log groups and the SQS event source.

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
  # checkov:skip=CKV_AWS_116:Async functions (scale-down, redrive, housekeeper) get a dead-letter queue below; the webhook is invoked synchronously and scale-up by an SQS event source (its own DLQ), where a Lambda DLQ never applies.

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

resource "aws_lambda_function_event_invoke_config" "async" {
  for_each = local.async_functions

  function_name                = aws_lambda_function.this[each.key].function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 3600
}

resource "aws_lambda_event_source_mapping" "scale_up" {
  event_source_arn = aws_sqs_queue.jobs.arn
  function_name    = aws_lambda_function.this["scale-up"].arn
  # The kill switch disables polling: a throttled poller would keep receiving and push queued jobs
  # toward maxReceiveCount and the DLQ (DESIGN 5b). Disabled, they wait in the queue.
  enabled                            = !var.kill_switch
  batch_size                         = var.scale_up_batch_size
  maximum_batching_window_in_seconds = var.scale_up_batch_size > 10 ? 1 : 0
  function_response_types            = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.scale_up_maximum_concurrency
  }

  lifecycle {
    precondition {
      condition     = var.kill_switch || local.scale_up_reserved >= var.scale_up_maximum_concurrency
      error_message = "scale_up_reserved_concurrency must be at least scale_up_maximum_concurrency: a throttled poller counts receives toward maxReceiveCount."
    }
  }
}
