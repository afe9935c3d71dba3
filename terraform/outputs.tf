output "webhook_url" {
  description = "Payload URL for the GitHub App or repository/organization webhook (content type application/json)."
  value       = "${aws_apigatewayv2_stage.default.invoke_url}webhook"
}

output "job_queue_url" {
  description = "URL of the SQS job queue."
  value       = aws_sqs_queue.jobs.url
}

output "job_queue_arn" {
  description = "ARN of the SQS job queue."
  value       = aws_sqs_queue.jobs.arn
}

output "dlq_url" {
  description = "URL of the job queue's dead-letter queue."
  value       = aws_sqs_queue.jobs_dlq.url
}

output "dlq_arn" {
  description = "ARN of the job queue's dead-letter queue."
  value       = aws_sqs_queue.jobs_dlq.arn
}

output "events_dlq_url" {
  description = "URL of the queue holding EventBridge and async-invocation events that could not be processed."
  value       = aws_sqs_queue.events_dlq.url
}

output "function_names" {
  description = "Lambda function names by key (webhook, scale-up, scale-down, redrive, housekeeper, budget-guard)."
  value       = { for k, f in aws_lambda_function.this : k => f.function_name }
}

output "function_arns" {
  description = "Lambda function ARNs by key."
  value       = { for k, f in aws_lambda_function.this : k => f.arn }
}

output "log_groups" {
  description = "CloudWatch log groups: one per function, plus `runner-commands` (RunCommand output) and `api-access`."
  value = merge(
    { for k, g in aws_cloudwatch_log_group.function : k => g.name },
    { "runner-commands" = aws_cloudwatch_log_group.runner_commands.name, "api-access" = aws_cloudwatch_log_group.api.name },
  )
}

output "launch_templates" {
  description = "Launch template names by runner template name."
  value       = { for k, lt in aws_launch_template.runner : k => lt.name }
}

output "runner_role_arn" {
  description = "ARN of the runner instances' IAM role."
  value       = aws_iam_role.runner.arn
}

output "runner_security_group_id" {
  description = "Security group of the runner instances (egress only)."
  value       = aws_security_group.runner.id
}

output "kms_key_arn" {
  description = "KMS key of the secrets, JIT configs, queues and logs."
  value       = local.kms_key_arn
}

output "secret_parameters" {
  description = "SSM SecureString names to fill when their variables were left null (`aws ssm put-parameter --overwrite --type SecureString`)."
  value = {
    webhook_secret = local.webhook_secret_name
    github         = local.github_secret_name
  }
}

output "runner_templates_parameter" {
  description = "SSM parameter holding the runner templates the Lambdas read."
  value       = aws_ssm_parameter.runner_templates.name
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms (null unless create_sns_topic)."
  value       = try(aws_sns_topic.alarms[0].arn, null)
}

output "dashboard_name" {
  description = "CloudWatch dashboard name."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "function_aliases" {
  description = "ARN of each function's `live` alias by key: what every trigger invokes, moved by `jitrunners rollout`."
  value       = { for k, a in aws_lambda_alias.live : k => a.arn }
}

output "budget_topic_arn" {
  description = "SNS topic AWS Budgets notifies and the budget guard subscribes to (null without a budget)."
  value       = try(aws_sns_topic.budget[0].arn, null)
}

output "budget_names" {
  description = "AWS Budgets of this deployment (monthly, daily) by kind."
  value       = { for k, b in aws_budgets_budget.this : k => b.name }
}
