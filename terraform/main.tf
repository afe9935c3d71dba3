# Names, the function table and the documents every other file derives from.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  prefix     = var.prefix
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  tags       = merge(var.tags, { "jitrunners:prefix" = var.prefix })

  app_mode = var.github_app_id != ""

  # The five Lambdas (docs/contracts.md "Lambda entry points"). Handler strings are checked against
  # the package by tests/deploy/test_terraform.py.
  functions = {
    "webhook" = {
      handler     = "jitrunners.handlers.webhook.handler"
      description = "Verifies GitHub workflow_job webhooks and enqueues launch messages"
      timeout     = 10
    }
    "scale-up" = {
      handler     = "jitrunners.handlers.scale_up.handler"
      description = "Launches runner instances and starts the runner on them (SQS job queue)"
      timeout     = var.scale_up_timeout_s
    }
    "scale-down" = {
      handler     = "jitrunners.handlers.scale_down.handler"
      description = "Terminates runner instances whose command ended or that were interrupted"
      timeout     = 60
    }
    "redrive" = {
      handler     = "jitrunners.handlers.redrive.handler"
      description = "Moves job messages from the DLQ back to the job queue (schedule)"
      timeout     = 300
    }
    "housekeeper" = {
      handler     = "jitrunners.handlers.housekeeper.handler"
      description = "Reaps zombie instances, orphan parameters and runners; redelivers failed webhooks"
      timeout     = 300
    }
  }
  # Invoked asynchronously by EventBridge: failed events land in the events DLQ.
  async_functions = toset(["scale-down", "redrive", "housekeeper"])

  reserved_concurrency = {
    "webhook"     = var.kill_switch ? 0 : var.webhook_reserved_concurrency
    "scale-up"    = var.kill_switch ? 0 : local.scale_up_reserved
    "scale-down"  = lookup(var.function_reserved_concurrency, "scale-down", 10)
    "redrive"     = lookup(var.function_reserved_concurrency, "redrive", 1)
    "housekeeper" = lookup(var.function_reserved_concurrency, "housekeeper", 1)
  }
  scale_up_reserved = coalesce(var.scale_up_reserved_concurrency, var.scale_up_maximum_concurrency)

  function_names = { for k, _ in local.functions : k => "${local.prefix}-${k}" }

  # SSM names (config, secrets, JIT configs).
  templates_param_name = "/${local.prefix}/config/runner-templates"
  webhook_secret_name  = "/${local.prefix}/secrets/webhook-secret"
  github_app_key_name  = "/${local.prefix}/secrets/github-app-key"
  github_token_name    = "/${local.prefix}/secrets/github-token"
  jit_param_path       = "/${local.prefix}/jit/"
  ssm_param_arn_prefix = "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter"
  runner_script_path   = "/opt/jitrunners/start-runner.sh"
  ssm_output_log_group = "/${local.prefix}/runner-commands"
  github_secret_name   = local.app_mode ? local.github_app_key_name : local.github_token_name

  # DESIGN 2 document the Lambdas read (RUNNER_TEMPLATES_PARAM): Lambda fields only.
  runner_templates = { for t in var.runner_templates : t.name => t }
  templates_document = jsonencode([for t in var.runner_templates : {
    name            = t.name
    labels          = t.labels
    launch_template = "${local.prefix}-${t.name}"
    instance_types  = t.instance_types
    market          = t.market
    max_runners     = t.max_runners
    runner_group_id = t.runner_group_id
    scope           = t.scope
    os              = t.os
    subnet_ids      = t.subnet_ids
    start_timeout_s = t.start_timeout_s
    idle_timeout_s  = t.idle_timeout_s
    max_lifetime_s  = t.max_lifetime_s
  }])

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
    MAX_RUNNERS                   = tostring(var.max_runners)
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
    POWERTOOLS_SERVICE_NAME       = local.prefix
    POWERTOOLS_METRICS_NAMESPACE  = local.prefix
    POWERTOOLS_LOG_LEVEL          = var.log_level
    POWERTOOLS_PARAMETERS_MAX_AGE = "300"
  }
}
