# The documents AWS evaluates or runs for this module: every IAM policy (the roles' and the KMS key
# policy) and the runners' user data, with the names they are built from.
#
# Pure expressions of the variables and of four inputs main.tf supplies: local.account_id,
# local.partition, local.region and local.deployed (ARNs and ids of what the module creates). No
# resource, data source or provider here: the local stack and the tests render this very file with
# the terraform binary, beside variables.tf (devstack/tfrender.py), then run the user data and
# evaluate every AWS request against these policies. Keep it that way: a reference to a resource
# here breaks that rendering (tests/deploy/test_documents.py says so first).

locals {
  prefix   = var.prefix
  tags     = merge(var.tags, { "jitrunners:prefix" = var.prefix })
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
    "budget-guard" = {
      handler     = "jitrunners.handlers.budget_guard.handler"
      description = "Acts on AWS Budgets notifications: notify, spot-only or the kill switch"
      timeout     = 60
    }
  }
  # Invoked asynchronously by EventBridge or SNS: failed events land in the events DLQ. Scale-down
  # reads its events from the teardown queue (an SQS event source with its own DLQ).
  async_functions = toset(["redrive", "housekeeper", "budget-guard"])
  # The EventBridge rules whose events go to the teardown queue (events.tf).
  teardown_rules = ["command-finished", "spot-interruption", "instance-stopped"]
  function_names = { for k, _ in local.functions : k => "${local.prefix}-${k}" }
  # Every trigger invokes this alias of each function; `jitrunners rollout` decides which
  # published version(s) it routes to (terraform/README.md "Canary rollouts").
  live_alias          = "live"
  function_arn_prefix = "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function"

  # Kill switch and spot-only (lambdas/jitrunners/guardrail.py): runtime records under guard_path,
  # and Terraform's own setting, which a lift restores.
  guard_path               = "/${local.prefix}/state/guard"
  kill_switch_record_name  = "${local.guard_path}/kill-switch"
  kill_switch_setting_name = "/${local.prefix}/config/kill-switch"
  kill_switch_functions    = ["webhook", "scale-up"]
  budget_topic_name        = "${local.prefix}-budget"

  # SSM names (config, secrets, JIT configs, state records).
  templates_param_name = "/${local.prefix}/config/runner-templates"
  webhook_secret_name  = "/${local.prefix}/secrets/webhook-secret"
  github_app_key_name  = "/${local.prefix}/secrets/github-app-key"
  github_token_name    = "/${local.prefix}/secrets/github-token"
  jit_param_path       = "/${local.prefix}/jit/"
  ssm_param_arn_prefix = "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter"
  runner_script_path   = "/opt/jitrunners/start-runner.sh"
  ssm_output_log_group = "/${local.prefix}/runner-commands"
  github_secret_name   = local.app_mode ? local.github_app_key_name : local.github_token_name
  # Further GitHub Apps' keys (var.github_extra_app_ids): one parameter each, by App id.
  github_extra_app_key_names = { for id in var.github_extra_app_ids : id => "${local.github_app_key_name}-${id}" }
  runner_role_name           = "${local.prefix}-runner"

  # DESIGN 2 document the Lambdas read (RUNNER_TEMPLATES_PARAM): Lambda fields only.
  runner_templates = { for t in var.runner_templates : t.name => t }
  templates_document = jsonencode([for t in var.runner_templates : merge({
    name                   = t.name
    labels                 = t.labels
    launch_template        = "${local.prefix}-${t.name}"
    instance_types         = t.instance_types
    market                 = t.market
    max_runners            = t.max_runners
    runner_group_id        = t.runner_group_id
    scope                  = t.scope
    os                     = t.os
    subnet_ids             = t.subnet_ids
    start_timeout_s        = t.start_timeout_s
    idle_timeout_s         = t.idle_timeout_s
    max_lifetime_s         = t.max_lifetime_s
    spot_breaker_threshold = t.spot_breaker_threshold
    spot_breaker_window_s  = t.spot_breaker_window_s
    spot_breaker_open_s    = t.spot_breaker_open_s
    sizing = t.sizing == null ? null : merge(t.sizing, {
      "root_device" = local.deployed.root_device_names[t.name]
    })
    # The warm pool (README "Warm pools") as lambdas/jitrunners/pools.py reads it: absent when
    # unset (the Lambdas refuse `"pool": null`), a schedule only when given, and a window's own
    # hot/stopped only where it sets them.
    }, t.pool == null ? {} : {
    pool = merge({
      hot            = t.pool.hot
      stopped        = t.pool.stopped
      hot_max_idle_s = t.pool.hot_max_idle_s
      owner          = t.pool.owner
      }, t.pool.schedule == null ? {} : {
      schedule = {
        timezone = t.pool.schedule.timezone
        windows  = [for w in t.pool.schedule.windows : { for k, v in w : k => v if v != null }]
      }
    })
  })])

  # Tags every launched resource carries from its launch template (instance, volume, interface):
  # the launch policy requires aws:RequestTag/jitrunners:prefix on each of them.
  launch_template_tags = {
    for name, _ in local.runner_templates : name => merge(local.tags, {
      "Name"                = "${local.prefix}-${name}"
      "jitrunners:template" = name
    })
  }
}

################################################################################
# Runner user data (EC2 runs it as root at first boot; the local stack runs it in a sandbox)
################################################################################

locals {
  scripts_dir = "${path.module}/../runner_scripts"
  user_data = {
    for name, t in local.runner_templates : name => t.os == "windows" ? templatefile("${path.module}/templates/user-data.ps1.tftpl", {
      bootstrap_b64    = filebase64("${local.scripts_dir}/bootstrap.ps1")
      start_runner_b64 = filebase64("${local.scripts_dir}/start-runner.ps1")
      runner_version   = var.runner_version
      runner_sha256    = lookup(var.runner_sha256, "win-x64", "")
      download_url     = var.runner_download_url
      preinstalled     = t.runner_preinstalled
      extra_user_data  = t.extra_user_data
      }) : templatefile("${path.module}/templates/user-data.sh.tftpl", {
      bootstrap_b64       = base64gzip(file("${local.scripts_dir}/bootstrap.sh"))
      start_runner_b64    = base64gzip(file("${local.scripts_dir}/start-runner.sh"))
      runner_version      = var.runner_version
      runner_sha256_x64   = lookup(var.runner_sha256, "x64", "")
      runner_sha256_arm64 = lookup(var.runner_sha256, "arm64", "")
      runner_download_url = var.runner_download_url
      preinstalled        = t.runner_preinstalled
      extra_user_data     = t.extra_user_data
    })
  }
}

################################################################################
# IAM policy documents
################################################################################

locals {
  ec2_arn      = "arn:${local.partition}:ec2:${local.region}:${local.account_id}"
  via_ssm      = "ssm.${local.region}.amazonaws.com"
  via_sqs      = "sqs.${local.region}.amazonaws.com"
  runner_types = distinct(flatten([for t in var.runner_templates : t.instance_types]))
  # Sized jobs (sizing policies) launch any type of the policies' families: `m7i.*`.
  sized_type_patterns = distinct(flatten([
    for t in var.runner_templates : t.sizing == null ? [] : [for f in t.sizing.families : "${f}.*"]
  ]))
  runner_amis       = distinct([for t in var.runner_templates : t.ami_id])
  key_pairs         = distinct(compact([for t in var.runner_templates : t.key_name == null ? "" : t.key_name]))
  runner_subnet_ids = distinct(concat(var.subnet_ids, flatten([for t in var.runner_templates : t.subnet_ids])))
  runner_security_group_ids = distinct(concat(
    [local.deployed.runner_security_group_id],
    flatten([for t in var.runner_templates : t.security_group_ids]),
  ))

  arn = {
    jit_params     = "${local.ssm_param_arn_prefix}${local.jit_param_path}*"
    jit_path       = "${local.ssm_param_arn_prefix}${trimsuffix(local.jit_param_path, "/")}"
    templates      = "${local.ssm_param_arn_prefix}${local.templates_param_name}"
    webhook_secret = "${local.ssm_param_arn_prefix}${local.webhook_secret_name}"
    github_secret  = "${local.ssm_param_arn_prefix}${local.github_secret_name}"
    # Records of re-runs and redeliveries (lambdas/jitrunners/aws/markers.py).
    state_params = "${local.ssm_param_arn_prefix}/${local.prefix}/state/*"
    state_path   = "${local.ssm_param_arn_prefix}/${local.prefix}/state"
    # What a runner must never read: everything of ours outside its own JIT config.
    not_for_runners = [
      "${local.ssm_param_arn_prefix}/${local.prefix}/secrets",
      "${local.ssm_param_arn_prefix}/${local.prefix}/secrets/*",
      "${local.ssm_param_arn_prefix}/${local.prefix}/config",
      "${local.ssm_param_arn_prefix}/${local.prefix}/config/*",
      "${local.ssm_param_arn_prefix}/${local.prefix}/state",
      "${local.ssm_param_arn_prefix}/${local.prefix}/state/*",
    ]
    ssm_documents = [
      "arn:${local.partition}:ssm:${local.region}::document/AWS-RunShellScript",
      "arn:${local.partition}:ssm:${local.region}::document/AWS-RunPowerShellScript",
    ]
    runner_instance_profile = "arn:${local.partition}:iam::${local.account_id}:instance-profile/${local.runner_role_name}"
  }

  # Ours = tagged with our prefix AND started with our instance profile: a tag alone is something
  # anyone with ec2:CreateTags could set (the code checks the profile too, aws/fleet.py).
  our_instance_conditions = [
    { test = "StringEquals", variable = "aws:ResourceTag/jitrunners:prefix", values = [local.prefix] },
    { test = "ArnEquals", variable = "ec2:InstanceProfile", values = [local.arn.runner_instance_profile] },
  ]

  # Instance tags the code writes after launch (lambdas/jitrunners/aws/fleet.py TAG_*): never the
  # prefix or template tags, which decide ownership.
  job_tag_keys = [
    "jitrunners:job-id", "jitrunners:run-id", "jitrunners:run-attempt", "jitrunners:repo",
    "jitrunners:installation-id", "jitrunners:delivery-id", "jitrunners:command-id",
    "jitrunners:started-at", "jitrunners:launched-for", "jitrunners:launch-attempt",
    "jitrunners:passed-on", "jitrunners:sizing", "jitrunners:runner-name",
    # Warm pools (README "Warm pools"): when a job claimed a stopped member, and the launch
    # template version a member booted from (its recycle signal). The pool tag itself is written
    # at launch only (TagAtCreation): a free member must not be made out of a busy one.
    "jitrunners:claimed-at", "jitrunners:lt-version",
  ]
}

locals {
  # Statements several functions share (the same words, the same grant).
  statements = {
    read_config = {
      Sid    = "ReadConfigAndGitHubCredentials"
      Effect = "Allow"
      Action = "ssm:GetParameter"
      Resource = concat(
        [local.arn.templates, local.arn.github_secret],
        [for name in values(local.github_extra_app_key_names) : "${local.ssm_param_arn_prefix}${name}"],
      )
    }
    terminate_ours = {
      Sid      = "TerminateOurInstances"
      Effect   = "Allow"
      Action   = "ec2:TerminateInstances"
      Resource = "${local.ec2_arn}:instance/*"
      Condition = {
        StringEquals = { "aws:ResourceTag/jitrunners:prefix" = local.prefix }
        ArnEquals    = { "ec2:InstanceProfile" = local.arn.runner_instance_profile }
      }
    }
    relaunch_jobs = {
      Sid      = "RelaunchJobs"
      Effect   = "Allow"
      Action   = "sqs:SendMessage"
      Resource = local.deployed.jobs_queue_arn
    }
    key_for_secrets_and_queue = {
      Sid       = "KeyForSecretsAndQueue"
      Effect    = "Allow"
      Action    = ["kms:Decrypt", "kms:GenerateDataKey"]
      Resource  = local.deployed.kms_key_arn
      Condition = local.key_via_services
    }
    # The spot circuit breaker's items in the deliveries table (lambdas/jitrunners/aws/breaker.py):
    # those items only, by their key.
    spot_breaker = {
      Sid      = "SpotBreakerState"
      Effect   = "Allow"
      Action   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
      Resource = local.deployed.deliveries_table_arn
      Condition = {
        "ForAllValues:StringLike" = { "dynamodb:LeadingKeys" = ["spot-breaker#*"] }
        "Null"                    = { "dynamodb:LeadingKeys" = "false" }
      }
    }
    describe_instances = {
      Sid      = "DescribeInstances"
      Effect   = "Allow"
      Action   = "ec2:DescribeInstances"
      Resource = "*" # Describe* has no resource-level permissions
    }
    # Warm pools: a stopped member records the default version of its launch template and is
    # recycled when that changes (README "Warm pools").
    describe_launch_templates = {
      Sid      = "DescribeLaunchTemplateVersions"
      Effect   = "Allow"
      Action   = "ec2:DescribeLaunchTemplates"
      Resource = "*" # Describe* has no resource-level permissions
    }
  }
}

locals {
  assume_role_policies = {
    lambda = jsonencode({
      Version = "2012-10-17"
      Statement = [{
        Effect    = "Allow"
        Action    = "sts:AssumeRole"
        Principal = { Service = "lambda.amazonaws.com" }
      }]
    })
    ec2 = jsonencode({
      Version = "2012-10-17"
      Statement = [{
        Effect    = "Allow"
        Action    = "sts:AssumeRole"
        Principal = { Service = "ec2.amazonaws.com" }
      }]
    })
  }

  # What every function needs: its own log group, tracing, the async DLQ where it has one.
  lambda_base_policies = {
    for key, _ in local.functions : key => jsonencode({
      Version = "2012-10-17"
      Statement = concat([
        {
          Sid      = "OwnLogGroup"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = "${local.deployed.function_log_group_arns[key]}:*"
        },
        {
          Sid      = "Tracing"
          Effect   = "Allow"
          Action   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
          Resource = "*" # X-Ray has no resource-level permissions
        },
        ], [for st in [
          {
            Sid      = "AsyncDeadLetterQueue"
            Effect   = "Allow"
            Action   = "sqs:SendMessage"
            Resource = local.deployed.events_dlq_arn
          },
          {
            Sid       = "AsyncDeadLetterQueueKey"
            Effect    = "Allow"
            Action    = ["kms:GenerateDataKey", "kms:Decrypt"]
            Resource  = local.deployed.kms_key_arn
            Condition = { StringEquals = { "kms:ViaService" = local.via_sqs } }
          },
      ] : st if contains(local.async_functions, key)])
    })
  }

  # Parameter Store and SQS use the module's key on the caller's behalf; nothing calls KMS directly.
  key_via_services = { StringEquals = { "kms:ViaService" = [local.via_ssm, local.via_sqs] } }

  function_policies = {
    "webhook" = jsonencode({
      Version = "2012-10-17"
      Statement = [
        {
          Sid      = "EnqueueLaunch"
          Effect   = "Allow"
          Action   = "sqs:SendMessage"
          Resource = local.deployed.jobs_queue_arn
        },
        {
          Sid      = "ReadSecretAndTemplates"
          Effect   = "Allow"
          Action   = "ssm:GetParameter"
          Resource = [local.arn.webhook_secret, local.arn.templates]
        },
        {
          # Each delivery id once (replay guard); released when its enqueue fails.
          Sid      = "ClaimDeliveries"
          Effect   = "Allow"
          Action   = ["dynamodb:PutItem", "dynamodb:DeleteItem"]
          Resource = local.deployed.deliveries_table_arn
        },
        {
          Sid       = "DecryptSecretEncryptQueue"
          Effect    = "Allow"
          Action    = ["kms:Decrypt", "kms:GenerateDataKey"]
          Resource  = local.deployed.kms_key_arn
          Condition = local.key_via_services
        },
      ]
    })

    "scale-up" = jsonencode({
      Version = "2012-10-17"
      Statement = [
        {
          Sid    = "ConsumeAndEnqueue"
          Effect = "Allow"
          Action = [
            "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes", "sqs:SendMessage",
          ]
          Resource = local.deployed.jobs_queue_arn
        },
        {
          # A launch whose instances never came online MAX_LAUNCH_ATTEMPTS times is parked in
          # the DLQ (its alarm calls an operator; provisioning/start.py). Without this the send
          # was refused and the start message went round the queue until max_redrives held it.
          Sid      = "ParkLaunchInDlq"
          Effect   = "Allow"
          Action   = "sqs:SendMessage"
          Resource = local.deployed.dlq_arn
        },
        local.statements.read_config,
        {
          # Written, tagged with the instance's ARN and deleted here; read only by that instance.
          Sid      = "JitConfigParameters"
          Effect   = "Allow"
          Action   = ["ssm:PutParameter", "ssm:AddTagsToResource", "ssm:DeleteParameter"]
          Resource = local.arn.jit_params
        },
        {
          # Each launch of a job attempt claimed once (duplicates launch one instance); a
          # released job's claim is given back. A batch's claims are one TransactWriteItems,
          # whose every Put IAM authorizes as dynamodb:PutItem (no action of its own).
          Sid      = "ClaimLaunches"
          Effect   = "Allow"
          Action   = ["dynamodb:PutItem", "dynamodb:DeleteItem"]
          Resource = local.deployed.deliveries_table_arn
        },
        {
          # The webhook's job-ran claims (a runner of ours took the job), read before a launch
          # asks GitHub whether its job is still queued: those items only, by their key.
          Sid      = "ReadJobsRan"
          Effect   = "Allow"
          Action   = "dynamodb:BatchGetItem"
          Resource = local.deployed.deliveries_table_arn
          Condition = {
            "ForAllValues:StringLike" = { "dynamodb:LeadingKeys" = ["ran:*"] }
            "Null"                    = { "dynamodb:LeadingKeys" = "false" }
          }
        },
        {
          # Re-run checks (a job failed on one of our runners) share scale-down's re-run records.
          Sid      = "RerunRecords"
          Effect   = "Allow"
          Action   = ["ssm:PutParameter", "ssm:AddTagsToResource", "ssm:GetParameter", "ssm:DeleteParameter"]
          Resource = local.arn.state_params
        },
        {
          Sid       = "KeyForSecretsQueueAndJitConfigs"
          Effect    = "Allow"
          Action    = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
          Resource  = local.deployed.kms_key_arn
          Condition = local.key_via_services
        },
        {
          # Instances, their volumes and interfaces: only from our launch templates, which tag
          # all three with our prefix (aws:RequestTag needs the tag on each resource at creation).
          Sid    = "LaunchFromOurTemplatesTagged"
          Effect = "Allow"
          Action = ["ec2:CreateFleet", "ec2:RunInstances"]
          Resource = [
            "${local.ec2_arn}:volume/*",
            "${local.ec2_arn}:network-interface/*",
          ]
          Condition = {
            StringEquals = { "aws:RequestTag/jitrunners:prefix" = local.prefix }
            ArnEquals    = { "ec2:LaunchTemplate" = values(local.deployed.launch_template_arns) }
          }
        },
        {
          Sid      = "LaunchOurInstanceTypes"
          Effect   = "Allow"
          Action   = ["ec2:CreateFleet", "ec2:RunInstances"]
          Resource = "${local.ec2_arn}:instance/*"
          Condition = {
            StringEquals = { "aws:RequestTag/jitrunners:prefix" = local.prefix }
            # The templates' types, and the sizing policies' families (`m7i.*`).
            StringLike = { "ec2:InstanceType" = concat(local.runner_types, local.sized_type_patterns) }
            ArnEquals = {
              "ec2:LaunchTemplate"  = values(local.deployed.launch_template_arns)
              "ec2:InstanceProfile" = local.arn.runner_instance_profile
            }
          }
        },
        local.statements.spot_breaker,
        {
          # Sized jobs: is there an instance type meeting the request (lifecycle/provisioning).
          Sid      = "InstanceTypesForSizedJobs"
          Effect   = "Allow"
          Action   = "ec2:GetInstanceTypesFromInstanceRequirements"
          Resource = "*" # no resource-level permissions
        },
        {
          Sid      = "LaunchTemplates"
          Effect   = "Allow"
          Action   = ["ec2:CreateFleet", "ec2:RunInstances"]
          Resource = values(local.deployed.launch_template_arns)
        },
        {
          # Our subnets and security groups, the templates' AMIs and key pairs only.
          Sid    = "LaunchIntoOurNetwork"
          Effect = "Allow"
          Action = ["ec2:CreateFleet", "ec2:RunInstances"]
          Resource = concat(
            [for s in local.runner_subnet_ids : "${local.ec2_arn}:subnet/${s}"],
            [for g in local.runner_security_group_ids : "${local.ec2_arn}:security-group/${g}"],
            [for a in local.runner_amis : "arn:${local.partition}:ec2:${local.region}::image/${a}"],
            [for k in local.key_pairs : "${local.ec2_arn}:key-pair/${k}"],
            ["${local.ec2_arn}:fleet/*"],
          )
        },
        {
          Sid       = "TagAtCreation"
          Effect    = "Allow"
          Action    = "ec2:CreateTags"
          Resource  = "${local.ec2_arn}:*/*"
          Condition = { StringEquals = { "ec2:CreateAction" = ["CreateFleet", "RunInstances"] } }
        },
        {
          # After launch: the job tags only, never the ownership tags.
          Sid      = "TagOurInstancesWithJobTags"
          Effect   = "Allow"
          Action   = "ec2:CreateTags"
          Resource = "${local.ec2_arn}:instance/*"
          Condition = {
            StringEquals                = { "aws:ResourceTag/jitrunners:prefix" = local.prefix }
            ArnEquals                   = { "ec2:InstanceProfile" = local.arn.runner_instance_profile }
            "ForAllValues:StringEquals" = { "aws:TagKeys" = local.job_tag_keys }
            "Null"                      = { "aws:TagKeys" = "false" }
          }
        },
        local.statements.terminate_ours,
        {
          # Warm pools (README "Warm pools"): a stopped member is stopped once its agent is
          # online, and started when a job claims it. Ours only, as for TerminateInstances.
          Sid      = "StartAndStopOurPoolMembers"
          Effect   = "Allow"
          Action   = ["ec2:StartInstances", "ec2:StopInstances"]
          Resource = "${local.ec2_arn}:instance/*"
          Condition = {
            StringEquals = { "aws:ResourceTag/jitrunners:prefix" = local.prefix }
            ArnEquals    = { "ec2:InstanceProfile" = local.arn.runner_instance_profile }
          }
        },
        local.statements.describe_instances,
        local.statements.describe_launch_templates,
        {
          Sid       = "PassRunnerRole"
          Effect    = "Allow"
          Action    = "iam:PassRole"
          Resource  = local.deployed.runner_role_arn
          Condition = { StringEquals = { "iam:PassedToService" = "ec2.amazonaws.com" } }
        },
        {
          Sid       = "SpotServiceLinkedRole"
          Effect    = "Allow"
          Action    = "iam:CreateServiceLinkedRole"
          Resource  = "arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"
          Condition = { StringEquals = { "iam:AWSServiceName" = "spot.amazonaws.com" } }
        },
        {
          # SSM authorises an instance target by its tags only; the code checks the profile too.
          Sid       = "StartRunnerOnOurInstances"
          Effect    = "Allow"
          Action    = "ssm:SendCommand"
          Resource  = "${local.ec2_arn}:instance/*"
          Condition = { StringEquals = { "aws:ResourceTag/jitrunners:prefix" = local.prefix } }
        },
        {
          Sid      = "StartRunnerDocuments"
          Effect   = "Allow"
          Action   = "ssm:SendCommand"
          Resource = local.arn.ssm_documents
        },
        {
          Sid      = "FindExistingJitConfig"
          Effect   = "Allow"
          Action   = "ssm:DescribeParameters"
          Resource = "*" # DescribeParameters has no resource-level permissions
        },
        {
          # A retried start looks for the runner command an earlier delivery already sent.
          Sid      = "FindSentRunnerCommand"
          Effect   = "Allow"
          Action   = "ssm:ListCommands"
          Resource = "*" # ListCommands has no resource-level permissions
        },
        {
          # Warm pools: one call per batch says which members' agents are online.
          Sid      = "AgentsOnline"
          Effect   = "Allow"
          Action   = "ssm:DescribeInstanceInformation"
          Resource = "*" # DescribeInstanceInformation has no resource-level permissions
        },
      ]
    })

    "scale-down" = jsonencode({
      Version = "2012-10-17"
      Statement = [
        {
          # The teardown queue's event source mapping polls with the function's role.
          Sid      = "ReadTeardownQueue"
          Effect   = "Allow"
          Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]
          Resource = local.deployed.teardown_queue_arn
        },
        local.statements.read_config,
        {
          # A batch's ended runners' JIT configs, 10 a call (the runners only read theirs).
          Sid      = "DeleteJitConfigs"
          Effect   = "Allow"
          Action   = ["ssm:DeleteParameter", "ssm:DeleteParameters"]
          Resource = local.arn.jit_params
        },
        {
          Sid      = "StateRecords"
          Effect   = "Allow"
          Action   = ["ssm:PutParameter", "ssm:AddTagsToResource", "ssm:GetParameter", "ssm:DeleteParameter"]
          Resource = local.arn.state_params
        },
        local.statements.relaunch_jobs,
        local.statements.key_for_secrets_and_queue,
        local.statements.describe_instances,
        {
          # A state change after the runner's command ended by itself needs nothing more.
          Sid      = "ReadRunnerCommandStatus"
          Effect   = "Allow"
          Action   = "ssm:GetCommandInvocation"
          Resource = "*" # GetCommandInvocation has no resource-level permissions
        },
        local.statements.terminate_ours,
        {
          # One tag, on our instances whose runner ended itself, just before their terminate:
          # the state change that follows reads it instead of GetCommandInvocation.
          Sid      = "TagRunnerExited"
          Effect   = "Allow"
          Action   = "ec2:CreateTags"
          Resource = "${local.ec2_arn}:instance/*"
          Condition = {
            StringEquals                = { "aws:ResourceTag/jitrunners:prefix" = local.prefix }
            ArnEquals                   = { "ec2:InstanceProfile" = local.arn.runner_instance_profile }
            "ForAllValues:StringEquals" = { "aws:TagKeys" = ["jitrunners:runner-exited"] }
            "Null"                      = { "aws:TagKeys" = "false" }
          }
        },
        local.statements.spot_breaker,
        {
          # The cost of a job when its runner ends: spot price at launch, on-demand list price.
          Sid      = "PricesForJobCost"
          Effect   = "Allow"
          Action   = ["ec2:DescribeSpotPriceHistory", "pricing:GetProducts"]
          Resource = "*" # neither has resource-level permissions
        },
      ]
    })

    "redrive" = jsonencode({
      Version = "2012-10-17"
      Statement = [
        {
          Sid      = "DrainDeadLetterQueue"
          Effect   = "Allow"
          Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"]
          Resource = local.deployed.dlq_arn
        },
        {
          Sid      = "RequeueJobs"
          Effect   = "Allow"
          Action   = "sqs:SendMessage"
          Resource = [local.deployed.jobs_queue_arn, local.deployed.dlq_arn]
        },
        local.statements.read_config,
        {
          Sid       = "KeyForQueuesAndSecrets"
          Effect    = "Allow"
          Action    = ["kms:Decrypt", "kms:GenerateDataKey"]
          Resource  = local.deployed.kms_key_arn
          Condition = local.key_via_services
        },
      ]
    })

    "housekeeper" = jsonencode({
      Version = "2012-10-17"
      Statement = [
        local.statements.read_config,
        {
          Sid      = "DeleteOrphanJitConfigs"
          Effect   = "Allow"
          Action   = ["ssm:DeleteParameter", "ssm:DeleteParameters"]
          Resource = local.arn.jit_params
        },
        {
          Sid      = "StateRecords"
          Effect   = "Allow"
          Action   = ["ssm:PutParameter", "ssm:AddTagsToResource", "ssm:GetParameter", "ssm:DeleteParameter", "ssm:GetParametersByPath"]
          Resource = [local.arn.state_params, local.arn.state_path]
        },
        {
          # Whether Terraform's kill switch holds the webhook: no redelivery is asked for then.
          Sid      = "ReadKillSwitchSetting"
          Effect   = "Allow"
          Action   = "ssm:GetParameter"
          Resource = "${local.ssm_param_arn_prefix}${local.kill_switch_setting_name}"
        },
        local.statements.relaunch_jobs,
        local.statements.key_for_secrets_and_queue,
        {
          Sid      = "ListInstancesParametersCommands"
          Effect   = "Allow"
          Action   = ["ec2:DescribeInstances", "ssm:DescribeParameters", "ssm:GetCommandInvocation"]
          Resource = "*" # no resource-level permissions
        },
        local.statements.describe_launch_templates,
        local.statements.terminate_ours,
      ]
    })

    "budget-guard" = local.budget_guard_policy
  }

  # The budget guard's policy (lambdas/jitrunners/budget.py, guardrail.py): engage the kill switch
  # or spot-only, nothing else. Lifting is an operator's (jitrunners kill-switch off).
  budget_guard_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "StopWebhookAndScaleUp"
        Effect   = "Allow"
        Action   = "lambda:PutFunctionConcurrency"
        Resource = [for k in local.kill_switch_functions : "${local.function_arn_prefix}:${local.function_names[k]}"]
      },
      {
        Sid      = "FindTheJobQueueMapping"
        Effect   = "Allow"
        Action   = "lambda:ListEventSourceMappings"
        Resource = "*" # ListEventSourceMappings has no resource-level permissions
      },
      {
        # Only mappings of this deployment (the module tags its mapping with the prefix).
        Sid       = "PauseOurEventSourceMapping"
        Effect    = "Allow"
        Action    = "lambda:UpdateEventSourceMapping"
        Resource  = "arn:${local.partition}:lambda:${local.region}:${local.account_id}:event-source-mapping:*"
        Condition = { StringEquals = { "aws:ResourceTag/jitrunners:prefix" = local.prefix } }
      },
      {
        Sid      = "GuardRecords"
        Effect   = "Allow"
        Action   = ["ssm:GetParameter", "ssm:PutParameter"]
        Resource = "${local.ssm_param_arn_prefix}${local.guard_path}/*"
      },
    ]
  })

  # AWS Budgets publishes its notifications to the budget topic (AWS Billing User Guide, "Creating
  # an Amazon SNS topic for budget notifications"): this account's budgets only.
  budget_topic_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "BudgetsOfThisAccountPublish"
        Effect    = "Allow"
        Principal = { Service = "budgets.amazonaws.com" }
        Action    = "SNS:Publish"
        Resource  = "arn:${local.partition}:sns:${local.region}:${local.account_id}:${local.budget_topic_name}"
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account_id }
          ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:budgets::${local.account_id}:*" }
        }
      },
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "SNS:Publish"
        Resource  = "arn:${local.partition}:sns:${local.region}:${local.account_id}:${local.budget_topic_name}"
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })

  # The runner instances' role: the SSM agent's RunCommand needs and their own JIT config only.
  runner_policies = {
    # Not AmazonSSMManagedInstanceCore: it grants ssm:GetParameter(s) on "*" (every JIT config),
    # plus State Manager, inventory, patching and Session Manager, none of which a runner uses.
    # RunCommand needs the agent to register, fetch and answer its messages.
    "ssm-agent" = jsonencode({
      Version = "2012-10-17"
      Statement = [
        {
          Sid      = "RegisterWithSsm"
          Effect   = "Allow"
          Action   = "ssm:UpdateInstanceInformation"
          Resource = "${local.ec2_arn}:instance/*"
          Condition = {
            StringEquals = { "aws:ResourceTag/jitrunners:prefix" = local.prefix }
          }
        },
        {
          Sid    = "RunCommandMessages"
          Effect = "Allow"
          Action = [
            "ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage",
            "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply",
            "ssmmessages:CreateControlChannel", "ssmmessages:OpenControlChannel",
          ]
          Resource = "*" # these act on the calling instance; no resource-level permissions
        },
      ]
    })

    # DESIGN 3b: an instance may read only its own JIT parameter, tagged with its ARN; IAM fills
    # ${ec2:SourceInstanceARN} from the instance profile's credentials. Scale-down deletes it.
    "own-jit-config" = jsonencode({
      Version = "2012-10-17"
      Statement = [
        {
          # Whatever else an operator attaches to the role: no other instance's JIT config.
          Sid      = "DenyOtherInstancesJitConfigs"
          Effect   = "Deny"
          Action   = ["ssm:GetParameter", "ssm:GetParameters", "ssm:GetParameterHistory", "ssm:DeleteParameter", "ssm:DeleteParameters"]
          Resource = local.arn.jit_params
          Condition = {
            StringNotEquals = { "aws:ResourceTag/jitrunners:instance-arn" = "$${ec2:SourceInstanceARN}" }
          }
        },
        {
          Sid      = "DenyJitConfigsByPath"
          Effect   = "Deny"
          Action   = "ssm:GetParametersByPath"
          Resource = [local.arn.jit_path, local.arn.jit_params]
        },
        {
          # Nor the secrets, the configuration or the state records.
          Sid      = "DenySecretsConfigAndState"
          Effect   = "Deny"
          Action   = "ssm:*"
          Resource = local.arn.not_for_runners
        },
        {
          Sid      = "OwnJitConfigOnly"
          Effect   = "Allow"
          Action   = "ssm:GetParameter"
          Resource = local.arn.jit_params
          Condition = {
            StringEquals = { "aws:ResourceTag/jitrunners:instance-arn" = "$${ec2:SourceInstanceARN}" }
          }
        },
        {
          # The key decrypts JIT configs only, through Parameter Store.
          Sid      = "DecryptJitConfigThroughSsm"
          Effect   = "Allow"
          Action   = "kms:Decrypt"
          Resource = local.deployed.kms_key_arn
          Condition = {
            StringEquals = { "kms:ViaService" = local.via_ssm }
            StringLike   = { "kms:EncryptionContext:PARAMETER_ARN" = local.arn.jit_params }
          }
        },
        {
          Sid      = "RunCommandOutput"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
          Resource = [local.deployed.runner_command_log_group_arn, "${local.deployed.runner_command_log_group_arn}:*"]
        },
        {
          Sid      = "RunCommandOutputGroups"
          Effect   = "Allow"
          Action   = "logs:DescribeLogGroups"
          Resource = "*" # DescribeLogGroups has no resource-level permissions
        },
      ]
    })
  }

  # The account administers the key (and IAM policies grant its use); the services that encrypt on
  # our behalf are named, each limited to our resources.
  kms_key_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*" # in a key policy, "*" is this key
      },
      {
        Sid       = "CloudWatchLogsEncryptsOurLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        # Not kms:Describe*: DescribeKey carries no encryption context, so this condition could
        # never allow it (the AWS example's Describe* grants nothing).
        Action   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*"]
        Resource = "*"
        Condition = {
          StringLike = {
            "kms:EncryptionContext:aws:logs:arn" = [
              "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/lambda/${local.prefix}-*",
              "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/${local.prefix}/*",
            ]
          }
        }
      },
      {
        Sid       = "AlarmsAndEventsUseEncryptedTopicAndQueues"
        Effect    = "Allow"
        Principal = { Service = ["cloudwatch.amazonaws.com", "events.amazonaws.com"] }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
      },
      {
        # Budgets encrypts what it publishes to the (encrypted) budget topic with this key.
        Sid       = "BudgetsPublishToEncryptedTopic"
        Effect    = "Allow"
        Principal = { Service = "budgets.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
      },
    ]
  })

  # Resource policies of the queues: TLS only; EventBridge may park undeliverable events of our
  # rules in the events DLQ, and only our teardown rules may send to the teardown queue.
  queue_arns = {
    jobs         = local.deployed.jobs_queue_arn
    jobs_dlq     = local.deployed.dlq_arn
    events_dlq   = local.deployed.events_dlq_arn
    teardown     = local.deployed.teardown_queue_arn
    teardown_dlq = local.deployed.teardown_dlq_arn
  }
  queue_senders = {
    events_dlq = values(local.deployed.event_rule_arns)
    teardown   = [for k, a in local.deployed.event_rule_arns : a if contains(local.teardown_rules, k)]
  }
  queue_policies = {
    for name, arn in local.queue_arns : name => jsonencode({
      Version = "2012-10-17"
      Statement = concat([
        {
          Sid       = "DenyInsecureTransport"
          Effect    = "Deny"
          Principal = "*"
          Action    = "sqs:*"
          Resource  = arn
          Condition = { Bool = { "aws:SecureTransport" = "false" } }
        },
        ], [for st in [
          {
            Sid       = "EventBridgeRulesOfOurs"
            Effect    = "Allow"
            Principal = { Service = "events.amazonaws.com" }
            Action    = "sqs:SendMessage"
            Resource  = arn
            Condition = { ArnEquals = { "aws:SourceArn" = lookup(local.queue_senders, name, []) } }
          },
      ] : st if contains(keys(local.queue_senders), name)])
    })
  }
}
