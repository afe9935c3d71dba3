# Logs Insights saved queries, a dashboard, alarms and an optional SNS topic (DESIGN 5).

locals {
  function_log_groups = [for k, _ in local.functions : aws_cloudwatch_log_group.function[k].name]
  metrics_namespace   = local.prefix
  alarm_actions       = concat(var.alarm_actions, [for t in aws_sns_topic.alarms : t.arn])
}

resource "aws_cloudwatch_query_definition" "job" {
  name            = "${local.prefix}/one-job-end-to-end"
  log_group_names = concat(local.function_log_groups, [aws_cloudwatch_log_group.runner_commands.name])
  # Replace 0 with the workflow job id (from the job's URL or the webhook). One text for both:
  # `jitrunners trace JOB_ID` runs this very file (the CLI's package data) with the id put in.
  query_string = file("${path.module}/../cli/jitrunners_cli/queries/one-job-end-to-end.logsinsights")
}

resource "aws_cloudwatch_query_definition" "launch_failures" {
  name            = "${local.prefix}/launch-failures-by-code"
  log_group_names = [aws_cloudwatch_log_group.function["scale-up"].name]
  query_string    = <<-EOT
    fields @timestamp, template, error_code, message
    | filter ispresent(error_code) or level = "ERROR"
    | stats count(*) as failures by error_code, template
    | sort failures desc
  EOT
}

resource "aws_cloudwatch_query_definition" "zombies" {
  name            = "${local.prefix}/zombie-actions"
  log_group_names = [aws_cloudwatch_log_group.function["housekeeper"].name]
  query_string    = <<-EOT
    fields @timestamp, instance_id, template, reason, message
    | filter ispresent(reason) and (message like /(?i)zombie|orphan|terminat|redeliver/)
    | sort @timestamp desc
    | limit 500
  EOT
}

resource "aws_sns_topic" "alarms" {
  count = var.create_sns_topic ? 1 : 0

  name              = "${local.prefix}-alarms"
  kms_master_key_id = local.kms_key_arn
  tags              = local.tags
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  for_each = {
    jobs     = aws_sqs_queue.jobs_dlq.name
    events   = aws_sqs_queue.events_dlq.name
    teardown = aws_sqs_queue.teardown_dlq.name
  }

  alarm_name          = "${local.prefix}-${each.key}-dlq-not-empty"
  alarm_description   = "Messages in ${each.value}: jobs or events that failed repeatedly and wait for a human or the redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

# Custom metrics from Powertools (namespace = prefix, dimension service = prefix). The Lambdas emit
# an undimensioned total beside the per-code/per-reason lines so one alarm can watch the total.
resource "aws_cloudwatch_metric_alarm" "launch_failures" {
  alarm_name          = "${local.prefix}-launch-failures"
  alarm_description   = "Runner launches are failing (capacity, quotas, launch template): see the launch-failures-by-code query."
  namespace           = local.metrics_namespace
  metric_name         = "LaunchFailed"
  dimensions          = { service = local.prefix }
  statistic           = "Sum"
  period              = 900
  evaluation_periods  = 1
  threshold           = var.alarm_launch_failures_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "zombies" {
  alarm_name          = "${local.prefix}-zombies"
  alarm_description   = "The housekeeper is reaping instances, parameters or runners that events should have cleaned: see the zombie-actions query."
  namespace           = local.metrics_namespace
  metric_name         = "Zombies"
  dimensions          = { service = local.prefix }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = var.alarm_zombies_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

# The webhook refuses every delivery while its secret is unset, the module's placeholder or
# shorter than 16 bytes: jobs are not taken until an operator stores a real secret.
resource "aws_cloudwatch_metric_alarm" "webhook_secret_not_configured" {
  alarm_name          = "${local.prefix}-webhook-secret-not-configured"
  alarm_description   = "The webhook secret parameter holds no usable secret (unset, the REPLACE_ME placeholder or under 16 bytes): every delivery is refused with 401. Store a real secret with aws ssm put-parameter --overwrite."
  namespace           = local.metrics_namespace
  metric_name         = "WebhookSecretNotConfigured"
  dimensions          = { service = local.prefix }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

# The budget guard acted (budget_action) or reported a budget alert (notify): an operator decides
# what next, and lifts with `jitrunners kill-switch off` / `jitrunners spot-only off`.
resource "aws_cloudwatch_metric_alarm" "budget_guard" {
  for_each = {
    "budget-exceeded"     = { metric = "BudgetExceeded", what = "A budget of this deployment crossed its alert threshold (see the budget-guard log group)" }
    "kill-switch-engaged" = { metric = "KillSwitchEngaged", what = "The budget guard engaged the kill switch: no job is taken or started, queued jobs wait; lift with jitrunners kill-switch off" }
    "spot-only-engaged"   = { metric = "SpotOnlyEngaged", what = "The budget guard engaged spot-only: launches use spot capacity alone; lift with jitrunners spot-only off" }
  }

  alarm_name          = "${local.prefix}-${each.key}"
  alarm_description   = "${each.value.what}."
  namespace           = local.metrics_namespace
  metric_name         = each.value.metric
  dimensions          = { service = local.prefix }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

# A warm pool that stays empty while it wants members: the housekeeper reports free members
# (PoolSize) and how many it is short (PoolDeficit) per template and kind each pass; the alarm
# fires when a whole period held no free member and a deficit, alarm_pool_empty_periods periods
# in a row. Jobs still run (they launch cold); an operator looks at PoolFillFailed (capacity,
# quotas) and whether max_runners leaves the pool room. Off-hours (target 0) never alarm.
resource "aws_cloudwatch_metric_alarm" "pool_empty" {
  for_each = local.pool_alarms

  alarm_name          = "${local.prefix}-pool-empty-${each.key}"
  alarm_description   = "The ${each.value.kind} pool of runner template ${each.value.template} had no free member while short of its target for ${var.alarm_pool_empty_periods * 10} minutes: its jobs launch cold. See PoolFillFailed on the dashboard (capacity, quotas) and whether max_runners leaves the pool room."
  evaluation_periods  = var.alarm_pool_empty_periods
  datapoints_to_alarm = var.alarm_pool_empty_periods
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  # A period without a housekeeper pass says nothing about the pool (its errors alarm apart).
  treat_missing_data = "notBreaching"
  alarm_actions      = local.alarm_actions
  ok_actions         = local.alarm_actions
  tags               = local.tags

  metric_query {
    id          = "empty"
    expression  = "IF(size == 0 AND deficit > 0, 1, 0)"
    label       = "Pool empty while short"
    return_data = true
  }
  metric_query {
    id = "size"
    metric {
      namespace   = local.metrics_namespace
      metric_name = "PoolSize"
      dimensions  = { service = local.prefix, template = each.value.template, kind = each.value.kind }
      stat        = "Maximum"
      period      = 600
    }
  }
  metric_query {
    id = "deficit"
    metric {
      namespace   = local.metrics_namespace
      metric_name = "PoolDeficit"
      dimensions  = { service = local.prefix, template = each.value.template, kind = each.value.kind }
      stat        = "Minimum"
      period      = 600
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "webhook_errors" {
  for_each = {
    "4xx" = { threshold = 20, what = "Deliveries refused (forged, unsigned or malformed, or a wrong secret)" }
    "5xx" = { threshold = 1, what = "Deliveries failed on our side (secret or queue unavailable); GitHub records them as failed" }
  }

  alarm_name          = "${local.prefix}-webhook-${each.key}"
  alarm_description   = "${each.value.what}."
  namespace           = "AWS/ApiGateway"
  metric_name         = each.key
  dimensions          = { ApiId = aws_apigatewayv2_api.webhook.id, Stage = "$default" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
  tags                = local.tags
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = local.prefix
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title = "Webhook deliveries", region = local.region, stat = "Sum", period = 300
          metrics = [
            [local.metrics_namespace, "WebhookReceived", "service", local.prefix],
            [local.metrics_namespace, "WebhookAccepted", "service", local.prefix],
            ["AWS/ApiGateway", "4xx", "ApiId", aws_apigatewayv2_api.webhook.id, "Stage", "$default"],
            ["AWS/ApiGateway", "5xx", "ApiId", aws_apigatewayv2_api.webhook.id, "Stage", "$default"],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title = "Queues", region = local.region, stat = "Maximum", period = 60
          metrics = [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.jobs.name],
            ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", aws_sqs_queue.jobs.name, { yAxis = "right" }],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.jobs_dlq.name],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.events_dlq.name],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.teardown.name],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.teardown_dlq.name],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title   = "Runners", region = local.region, stat = "Sum", period = 300
          metrics = [for name in ["WebhookAccepted", "RunnerLaunched", "RunnerStarted", "LaunchFailed", "Zombies"] : [local.metrics_namespace, name, "service", local.prefix]]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title   = "Lambda errors and throttles", region = local.region, stat = "Sum", period = 300
          metrics = flatten([for k, _ in local.functions : [["AWS/Lambda", "Errors", "FunctionName", local.function_names[k]], ["AWS/Lambda", "Throttles", "FunctionName", local.function_names[k]]]])
        }
      },
      {
        type = "log", x = 0, y = 12, width = 24, height = 6
        properties = {
          title = "Recent errors", region = local.region
          query = "SOURCE '${join("' | SOURCE '", local.function_log_groups)}' | fields @timestamp, @log, message, job_id, instance_id | filter level = \"ERROR\" | sort @timestamp desc | limit 50"
          view  = "table"
        }
      },
      {
        # JobCost (USD, estimated when a runner ends: lifecycle/teardown/cost.py) summed per
        # template and day; the metric is also dimensioned by repository for per-team views.
        type = "metric", x = 0, y = 18, width = 24, height = 6
        properties = {
          title = "Estimated job cost per template per day (USD)", region = local.region
          view  = "bar", stat = "Sum", period = 86400
          metrics = [[{
            expression = "SEARCH('{${local.metrics_namespace},service,template} MetricName=\"JobCost\"', 'Sum', 86400)"
            id         = "cost"
            label      = ""
          }]]
        }
      },
      {
        # Warm pools (README "Warm pools"): how long jobs wait for a runner, by path.
        type = "metric", x = 0, y = 24, width = 12, height = 6
        properties = {
          title = "Queue to runner (s): p50 and p95 by template and path", region = local.region
          view  = "timeSeries", period = 300
          metrics = [for p in ["p50", "p95"] : [{
            expression = "SEARCH('${local.pool_search.QueueToRunnerLatency}', '${p}', 300)"
            id         = "latency_${p}"
            label      = "${p} $${PROP('Dim.template')} $${PROP('Dim.path')}"
          }]]
        }
      },
      {
        type = "metric", x = 12, y = 24, width = 12, height = 6
        properties = {
          title = "Warm pools: free members (min) and deficit (max) by template and kind", region = local.region
          view  = "timeSeries", period = 300
          metrics = [
            [{ expression = "SEARCH('${local.pool_search.PoolSize}', 'Minimum', 300)", id = "size", label = "free $${PROP('Dim.template')} $${PROP('Dim.kind')}" }],
            [{ expression = "SEARCH('${local.pool_search.PoolDeficit}', 'Maximum', 300)", id = "deficit", label = "short $${PROP('Dim.template')} $${PROP('Dim.kind')}" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 30, width = 12, height = 6
        properties = {
          title = "Pool fills EC2 refused (jobs launch cold), by template and reason", region = local.region
          view  = "timeSeries", stat = "Sum", period = 300
          metrics = [[{
            expression = "SEARCH('${local.pool_search.PoolFillFailed}', 'Sum', 300)"
            id         = "fill_failed"
            label      = "$${PROP('Dim.template')} $${PROP('Dim.reason')}"
          }]]
        }
      },
    ]
  })
}
