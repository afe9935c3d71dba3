# The AWS account the module deploys into, what documents.tf needs of the created resources, and
# the Lambdas' environment. Names and documents are in documents.tf.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  # The inputs of documents.tf besides the variables (the local stack supplies its own).
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  deployed = {
    kms_key_arn                  = local.kms_key_arn
    jobs_queue_arn               = aws_sqs_queue.jobs.arn
    dlq_arn                      = aws_sqs_queue.jobs_dlq.arn
    events_dlq_arn               = aws_sqs_queue.events_dlq.arn
    teardown_queue_arn           = aws_sqs_queue.teardown.arn
    teardown_dlq_arn             = aws_sqs_queue.teardown_dlq.arn
    function_log_group_arns      = { for k, g in aws_cloudwatch_log_group.function : k => g.arn }
    launch_template_arns         = { for k, lt in aws_launch_template.runner : k => lt.arn }
    runner_role_arn              = aws_iam_role.runner.arn
    runner_security_group_id     = aws_security_group.runner.id
    runner_command_log_group_arn = aws_cloudwatch_log_group.runner_commands.arn
    event_rule_arns              = { for k, r in aws_cloudwatch_event_rule.this : k => r.arn }
    deliveries_table_arn         = aws_dynamodb_table.deliveries.arn
    # Sized jobs' disk override names the AMI's root device (lambdas/jitrunners/sizing.py).
    root_device_names = { for k, a in data.aws_ami.runner : k => a.root_device_name }
  }

  reserved_concurrency = {
    "webhook"      = local.kill_switch ? 0 : var.webhook_reserved_concurrency
    "scale-up"     = local.kill_switch ? 0 : local.scale_up_reserved
    "scale-down"   = lookup(var.function_reserved_concurrency, "scale-down", 10)
    "redrive"      = lookup(var.function_reserved_concurrency, "redrive", 1)
    "housekeeper"  = lookup(var.function_reserved_concurrency, "housekeeper", 1)
    "budget-guard" = lookup(var.function_reserved_concurrency, "budget-guard", 1)
  }
  scale_up_reserved = coalesce(var.scale_up_reserved_concurrency, var.scale_up_maximum_concurrency)

  # Every variable Settings.from_env reads, except RUNNER_TEMPLATES and WEBHOOK_SECRET (local stack
  # only: in AWS templates and secrets live in SSM). Checked by tests/deploy/test_terraform.py.
  environment = {
    JITRUNNERS_PREFIX             = local.prefix
    JOB_QUEUE_URL                 = aws_sqs_queue.jobs.url
    DLQ_URL                       = aws_sqs_queue.jobs_dlq.url
    RUNNER_TEMPLATES_PARAM        = aws_ssm_parameter.runner_templates.name
    WEBHOOK_SECRET_PARAM          = local.webhook_secret_name
    ALLOWED_OWNERS                = join(",", var.allowed_owners)
    ALLOWED_REPOS                 = join(",", var.allowed_repos)
    ALLOW_PUBLIC_REPOS            = tostring(var.allow_public_repos)
    MAX_BODY_BYTES                = tostring(var.max_body_bytes)
    DELIVERIES_TABLE              = aws_dynamodb_table.deliveries.name
    GITHUB_API_URL                = var.github_api_url
    GITHUB_APP_ID                 = var.github_app_id
    GITHUB_APP_KEY_PARAM          = local.app_mode ? local.github_app_key_name : ""
    GITHUB_TOKEN_PARAM            = local.app_mode ? "" : local.github_token_name
    GITHUB_EXTRA_APPS             = jsonencode([for id, name in local.github_extra_app_key_names : { app_id = id, key_param = name }])
    GITHUB_POINTS_PER_MINUTE      = tostring(var.github_points_per_minute)
    MAX_RUNNERS                   = tostring(var.max_runners)
    HEADCOUNT_MAX_AGE_S           = tostring(var.scale_up_headcount_max_age_s)
    CHECK_JOB_QUEUED              = tostring(var.check_job_queued)
    START_DELAY_S                 = tostring(var.start_delay_s)
    JIT_KMS_KEY_ID                = local.kms_key_arn
    RUNNER_SUBNET_IDS             = join(",", var.subnet_ids)
    RUNNER_SCRIPT_PATH            = local.runner_script_path
    RUNNER_INSTANCE_PROFILE_ARN   = aws_iam_instance_profile.runner.arn
    SSM_OUTPUT_LOG_GROUP          = aws_cloudwatch_log_group.runner_commands.name
    RERUN_INTERRUPTED_JOBS        = tostring(var.rerun_interrupted_jobs)
    MAX_RERUNS                    = tostring(var.max_reruns)
    MAX_REDRIVES                  = tostring(var.max_redrives)
    DRY_RUN                       = tostring(var.housekeeper_dry_run)
    RECONCILE_RUN_LISTINGS        = tostring(var.housekeeper_run_listings)
    BUDGET_ACTION                 = var.budget_action
    POWERTOOLS_SERVICE_NAME       = local.prefix
    POWERTOOLS_METRICS_NAMESPACE  = local.prefix
    POWERTOOLS_LOG_LEVEL          = var.log_level
    POWERTOOLS_PARAMETERS_MAX_AGE = "300"
  }
}
