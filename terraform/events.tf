# EventBridge: the events scale-down reacts to (sent to the teardown queue, which scale-down reads
# in batches), and the redrive and housekeeper schedules.

locals {
  event_rules = {
    # Terminal statuses of RunCommand invocations. Events carry no tags or comment, so the rule
    # filters on the documents we use and scale-down checks the instance's prefix tag.
    "command-finished" = {
      description = "SSM RunCommand of a runner reached a terminal status"
      target      = "teardown"
      pattern = {
        source        = ["aws.ssm"]
        "detail-type" = ["EC2 Command Invocation Status-change Notification"]
        detail = {
          "document-name" = ["AWS-RunShellScript", "AWS-RunPowerShellScript"]
          status          = ["Success", "Failed", "Cancelled", "TimedOut", "Delivery Timed Out", "Execution Timed Out", "Undeliverable", "Terminated"]
        }
      }
      schedule = null
    }
    "spot-interruption" = {
      description = "EC2 spot interruption warning (two minutes' notice)"
      target      = "teardown"
      pattern = {
        source        = ["aws.ec2"]
        "detail-type" = ["EC2 Spot Instance Interruption Warning"]
      }
      schedule = null
    }
    "instance-stopped" = {
      description = "EC2 instance stopped or terminated outside our control"
      target      = "teardown"
      pattern = {
        source        = ["aws.ec2"]
        "detail-type" = ["EC2 Instance State-change Notification"]
        detail        = { state = ["stopped", "terminated"] }
      }
      schedule = null
    }
    "redrive" = {
      description = "Redrive the job DLQ"
      target      = "redrive"
      pattern     = null
      schedule    = var.redrive_schedule
    }
    "housekeeper" = {
      description = "Reap zombies and orphans, redeliver failed webhooks"
      target      = "housekeeper"
      pattern     = null
      schedule    = var.housekeeper_schedule
    }
  }
}

resource "aws_cloudwatch_event_rule" "this" {
  for_each = local.event_rules

  name                = "${local.prefix}-${each.key}"
  description         = each.value.description
  event_pattern       = each.value.pattern == null ? null : jsonencode(each.value.pattern)
  schedule_expression = each.value.schedule
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "this" {
  for_each = local.event_rules

  rule = aws_cloudwatch_event_rule.this[each.key].name
  # The whole event becomes the message body (no input transformer): scale-down parses it as is.
  arn = each.value.target == "teardown" ? aws_sqs_queue.teardown.arn : aws_lambda_alias.live[each.value.target].arn

  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 20
  }

  dead_letter_config {
    arn = aws_sqs_queue.events_dlq.arn
  }
}

resource "aws_lambda_permission" "events" {
  for_each = { for k, r in local.event_rules : k => r if r.target != "teardown" }

  statement_id  = "AllowEventBridge-${each.key}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this[each.value.target].function_name
  qualifier     = aws_lambda_alias.live[each.value.target].name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.this[each.key].arn
}
