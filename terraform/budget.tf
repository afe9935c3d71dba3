# Budget guardrail: AWS Budgets on the cost allocation tag every resource of ours carries, an SNS
# topic they notify, and the budget guard Lambda acting on ACTUAL notifications (budget_action).

locals {
  budgets = merge(
    var.budget_monthly_amount == null ? {} : { monthly = { time_unit = "MONTHLY", amount = var.budget_monthly_amount } },
    var.budget_daily_amount == null ? {} : { daily = { time_unit = "DAILY", amount = var.budget_daily_amount } },
  )
  budget_enabled = length(local.budgets) > 0
  # Budgets' filter syntax for a user-defined tag: user:<key>$<value>.
  budget_tag_filter = format("user:%s$%s", "jitrunners:prefix", local.prefix)
}

# A user-defined tag counts in Cost Explorer and Budgets only once activated as a cost allocation
# tag (Billing console, or this resource; the management account of an organization only).
resource "aws_ce_cost_allocation_tag" "prefix" {
  count = local.budget_enabled && var.budget_activate_cost_allocation_tag ? 1 : 0

  tag_key = "jitrunners:prefix"
  status  = "Active"
}

resource "aws_sns_topic" "budget" {
  count = local.budget_enabled ? 1 : 0

  name              = local.budget_topic_name
  kms_master_key_id = local.kms_key_arn
  tags              = local.tags
}

# documents.tf local.budget_topic_policy: this account's budgets may publish, over TLS.
resource "aws_sns_topic_policy" "budget" {
  count = local.budget_enabled ? 1 : 0

  arn    = aws_sns_topic.budget[0].arn
  policy = local.budget_topic_policy
}

resource "aws_sns_topic_subscription" "budget_guard" {
  count = local.budget_enabled ? 1 : 0

  topic_arn = aws_sns_topic.budget[0].arn
  protocol  = "lambda"
  endpoint  = aws_lambda_alias.live["budget-guard"].arn
}

resource "aws_lambda_permission" "budget_topic" {
  count = local.budget_enabled ? 1 : 0

  statement_id  = "AllowBudgetTopic"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["budget-guard"].function_name
  qualifier     = aws_lambda_alias.live["budget-guard"].name
  principal     = "sns.amazonaws.com"
  source_arn    = aws_sns_topic.budget[0].arn
}

resource "aws_budgets_budget" "this" {
  for_each = local.budgets

  # lambdas/jitrunners/budget.py acts only on notifications of <prefix>-monthly and <prefix>-daily.
  name         = "${local.prefix}-${each.key}"
  budget_type  = "COST"
  limit_amount = format("%.2f", each.value.amount)
  limit_unit   = var.budget_currency
  time_unit    = each.value.time_unit

  cost_filter {
    name   = "TagKeyValue"
    values = [local.budget_tag_filter]
  }

  # What the guard acts on: the cost actually spent crossing the threshold.
  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = var.budget_threshold_percent
    threshold_type             = "PERCENTAGE"
    notification_type          = "ACTUAL"
    subscriber_sns_topic_arns  = [aws_sns_topic.budget[0].arn]
    subscriber_email_addresses = var.budget_notification_emails
  }

  tags = local.tags

  depends_on = [aws_sns_topic_policy.budget]
}
