################################################################################
# General
################################################################################

variable "prefix" {
  description = "Prefix of every resource name, tag (`jitrunners:prefix`) and SSM path. Must match JITRUNNERS_PREFIX rules: 1-31 characters of a-z, 0-9 or '-'."
  type        = string
  default     = "jitrunners"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,30}$", var.prefix))
    error_message = "prefix must be 1-31 characters of a-z, 0-9 or '-', starting alphanumeric."
  }
}

variable "tags" {
  description = "Tags added to every resource the module creates."
  type        = map(string)
  default     = {}
}

variable "kill_switch" {
  description = "Emergency stop: reserved concurrency 0 on the webhook and scale-up functions AND the SQS event source mapping disabled, so queued jobs wait in the queue instead of drifting into the DLQ (DESIGN 5b). Also on while the budget guard or `jitrunners kill-switch on` has engaged it at runtime (the plan reads their record); false does not lift that: `jitrunners kill-switch off` does."
  type        = bool
  default     = false
}

################################################################################
# Lambda package and functions
################################################################################

variable "lambda_package_path" {
  description = "Path of the Lambda zip built by `make package` (e.g. dist/jitrunners-lambda-arm64.zip)."
  type        = string

  validation {
    condition     = endswith(var.lambda_package_path, ".zip")
    error_message = "lambda_package_path must name a .zip file built by `make package`."
  }
}

variable "lambda_architecture" {
  description = "CPU architecture of the Lambda functions; must match the zip (`make package ARCH=...`)."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture must be arm64 or x86_64."
  }
}

variable "lambda_runtime" {
  description = "Lambda Python runtime; must match the zip (`make package LAMBDA_PYTHON=...`)."
  type        = string
  default     = "python3.14"

  validation {
    condition     = can(regex("^python3\\.1[2-9]$", var.lambda_runtime))
    error_message = "lambda_runtime must be python3.12 or newer (Amazon Linux 2023 runtimes)."
  }
}

variable "lambda_memory_size" {
  description = "Memory (MB) of each function, by function key (webhook, scale-up, scale-down, redrive, housekeeper, budget-guard). Missing keys use 256."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.lambda_memory_size : contains(["webhook", "scale-up", "scale-down", "redrive", "housekeeper", "budget-guard"], k) && v >= 128 && v <= 10240])
    error_message = "lambda_memory_size keys must be function keys and values 128-10240."
  }
}

variable "scale_up_timeout_s" {
  description = "Timeout of the scale-up function in seconds; the job queue's visibility timeout is 6x this."
  type        = number
  default     = 60

  validation {
    condition     = var.scale_up_timeout_s >= 10 && var.scale_up_timeout_s <= 900
    error_message = "scale_up_timeout_s must be between 10 and 900 (SQS visibility is capped at 12 h)."
  }
}

variable "webhook_reserved_concurrency" {
  description = "Reserved concurrency of the webhook function (cost control); -1 for unreserved. The kill switch overrides it with 0."
  type        = number
  default     = 50

  validation {
    condition     = var.webhook_reserved_concurrency == -1 || var.webhook_reserved_concurrency >= 1
    error_message = "webhook_reserved_concurrency must be -1 or at least 1 (use kill_switch for 0)."
  }
}

variable "scale_up_maximum_concurrency" {
  description = "Maximum concurrency of the SQS event source: this, not reserved concurrency, keeps scale-up inside the EC2 and GitHub rate limits. At least 2 (an SQS limit)."
  type        = number
  default     = 5

  validation {
    condition     = var.scale_up_maximum_concurrency >= 2 && var.scale_up_maximum_concurrency <= 1000
    error_message = "scale_up_maximum_concurrency must be between 2 and 1000."
  }
}

variable "scale_up_reserved_concurrency" {
  description = "Reserved concurrency of scale-up; null = scale_up_maximum_concurrency. Must be at least the event source's maximum concurrency, or the poller is throttled and receives count toward maxReceiveCount."
  type        = number
  default     = null

  validation {
    condition     = var.scale_up_reserved_concurrency == null || try(var.scale_up_reserved_concurrency >= 2, false)
    error_message = "scale_up_reserved_concurrency must be null or at least 2 (use kill_switch for 0)."
  }
}

variable "scale_up_batch_size" {
  description = "SQS messages per scale-up invocation."
  type        = number
  default     = 10

  validation {
    condition     = var.scale_up_batch_size >= 1 && var.scale_up_batch_size <= 100
    error_message = "scale_up_batch_size must be between 1 and 100."
  }
}

variable "scale_up_batching_window_s" {
  description = "Seconds scale-up's event source may wait for a batch to fill once its first job is in (SQS's MaximumBatchingWindowInSeconds). 0 invokes at once (lowest queue-to-runner latency); 1 or more fills batches under a burst, so that the per-batch calls (the headcount and batch describes, CreateFleet, the claims' transaction, the start messages) are shared by more jobs. At least 1 whenever scale_up_batch_size is above 10, as AWS requires."
  type        = number
  default     = 0

  validation {
    condition     = var.scale_up_batching_window_s >= 0 && var.scale_up_batching_window_s <= 300 && floor(var.scale_up_batching_window_s) == var.scale_up_batching_window_s
    error_message = "scale_up_batching_window_s must be a whole number of seconds between 0 and 300."
  }
}

variable "scale_down_batch_size" {
  description = "EventBridge events per scale-down invocation, read from the teardown queue (gathered for up to 1 s above 10): one DescribeInstances and one TerminateInstances serve the whole batch."
  type        = number
  default     = 50

  validation {
    condition     = var.scale_down_batch_size >= 1 && var.scale_down_batch_size <= 1000 && floor(var.scale_down_batch_size) == var.scale_down_batch_size
    error_message = "scale_down_batch_size must be a whole number between 1 and 1000 (TerminateInstances takes up to 1,000 instances)."
  }
}

variable "scale_down_maximum_concurrency" {
  description = "Maximum concurrency of the teardown queue's event source: scale-down invocations at once (each one DescribeInstances and one TerminateInstances per batch). At least 2 (an SQS limit); at most scale-down's reserved concurrency (function_reserved_concurrency, default 10)."
  type        = number
  default     = 5

  validation {
    condition     = var.scale_down_maximum_concurrency >= 2 && var.scale_down_maximum_concurrency <= 1000
    error_message = "scale_down_maximum_concurrency must be between 2 and 1000."
  }
}

variable "scale_down_max_receive_count" {
  description = "Receives of a teardown event (a batch item failure each time) before SQS moves it to the teardown DLQ. The queue's visibility timeout is six times scale-down's timeout (6 min), so the default retries for about an hour."
  type        = number
  default     = 10

  validation {
    condition     = var.scale_down_max_receive_count >= 2 && var.scale_down_max_receive_count <= 1000
    error_message = "scale_down_max_receive_count must be between 2 and 1000."
  }
}

variable "redrive_schedule" {
  description = "EventBridge schedule expression of the redrive function."
  type        = string
  default     = "rate(10 minutes)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.redrive_schedule))
    error_message = "redrive_schedule must be a rate(...) or cron(...) expression."
  }
}

variable "housekeeper_schedule" {
  description = "EventBridge schedule expression of the housekeeper function."
  type        = string
  default     = "rate(5 minutes)"

  validation {
    condition     = can(regex("^(rate|cron)\\(.+\\)$", var.housekeeper_schedule))
    error_message = "housekeeper_schedule must be a rate(...) or cron(...) expression."
  }
}

variable "housekeeper_run_listings" {
  description = "Workflow runs whose jobs the housekeeper's reconciliation lists per repository and pass, at most (one GitHub request each); with more runs queued or in progress it goes round them from pass to pass."
  type        = number
  default     = 300

  validation {
    condition     = var.housekeeper_run_listings >= 1 && var.housekeeper_run_listings <= 5000 && floor(var.housekeeper_run_listings) == var.housekeeper_run_listings
    error_message = "housekeeper_run_listings must be a whole number between 1 and 5000."
  }
}

variable "log_retention_days" {
  description = "Retention of every CloudWatch log group the module creates (Lambda logs, RunCommand output)."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ...)."
  }
}

variable "log_level" {
  description = "Powertools log level of the functions."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "tracing_mode" {
  description = "X-Ray tracing mode of the functions (PassThrough or Active)."
  type        = string
  default     = "PassThrough"

  validation {
    condition     = contains(["PassThrough", "Active"], var.tracing_mode)
    error_message = "tracing_mode must be PassThrough or Active."
  }
}

################################################################################
# Encryption
################################################################################

variable "kms_key_arn" {
  description = "ARN of a KMS key for the SSM secrets, JIT parameters, SQS queues, log groups, SNS topic and Lambda environments. null: the module creates one (rotation on). The key policy must let CloudWatch Logs and CloudWatch alarms use it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

################################################################################
# GitHub
################################################################################

variable "github_api_url" {
  description = "GitHub REST API base URL (GitHub Enterprise Server: https://HOST/api/v3)."
  type        = string
  default     = "https://api.github.com"

  validation {
    condition     = can(regex("^https://", var.github_api_url))
    error_message = "github_api_url must be an https:// URL."
  }
}

variable "github_app_id" {
  description = "GitHub App id (App mode). Empty string: token mode (github_token)."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^[0-9]*$", var.github_app_id))
    error_message = "github_app_id must be numeric (or empty for token mode)."
  }
}

variable "github_app_private_key" {
  description = "GitHub App private key (PEM). null: the SSM parameter is created with a placeholder and its value is left to you (`aws ssm put-parameter --overwrite`); Terraform then ignores its value."
  type        = string
  default     = null
  sensitive   = true
}

variable "github_extra_app_ids" {
  description = "Further GitHub Apps (App mode), installed on the same owners as github_app_id: generate-jitconfig for each job goes to one of the Apps (chosen by job id), so each App's installation spends its own rate limits (900 points per minute: about 180 JIT configs a minute per App). Each App gets a SecureString parameter /<prefix>/secrets/github-app-key-<id> created with the placeholder REPLACE_ME: put its private key there (aws ssm put-parameter --overwrite); until then that App is skipped."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.github_extra_app_ids : can(regex("^[0-9]+$", id))]) && length(distinct(var.github_extra_app_ids)) == length(var.github_extra_app_ids)
    error_message = "github_extra_app_ids: numeric App ids, each once."
  }
  validation {
    condition     = length(var.github_extra_app_ids) == 0 || (var.github_app_id != "" && !contains(var.github_extra_app_ids, var.github_app_id))
    error_message = "github_extra_app_ids needs App mode (github_app_id set) and must not list github_app_id itself."
  }
}

variable "github_points_per_minute" {
  description = "GitHub points per minute each Lambda process spends at most per App installation (GitHub's secondary limit is 900; GET 1 point, POST 5). Calls beyond it wait in SQS instead of being sent and refused. Lower it when several processes share an installation (e.g. 900 / the scale-up event source's maximum concurrency); 0: only what GitHub's answers say."
  type        = number
  default     = 900

  validation {
    condition     = var.github_points_per_minute >= 0 && floor(var.github_points_per_minute) == var.github_points_per_minute
    error_message = "github_points_per_minute: a whole number, 0 or more."
  }
}

variable "github_token" {
  description = "Token mode: a fine-grained or classic token. null: created with a placeholder for you to overwrite."
  type        = string
  default     = null
  sensitive   = true
}

variable "webhook_secret" {
  description = "Webhook secret (one per line during a rotation; each line at least 16 bytes, use 32+ random ones). null: the parameter is created with the placeholder REPLACE_ME for you to overwrite with aws ssm put-parameter --overwrite; the webhook treats the placeholder and any line under 16 bytes as no secret and refuses every delivery (401 secret_not_configured, alarm <prefix>-webhook-secret-not-configured) until then."
  type        = string
  default     = null
  sensitive   = true
}

variable "allowed_owners" {
  description = "Owners (orgs/users) whose jobs are taken; empty list: all (token mode only: an App deployment must name its owners, since anyone can install a public App)."
  type        = list(string)
  default     = []

  # Cross-variable validation: Terraform >= 1.9 (versions.tf).
  validation {
    condition     = var.github_app_id == "" || length(var.allowed_owners) > 0
    error_message = "allowed_owners must not be empty in GitHub App mode (github_app_id set): name the organizations whose jobs may use these runners."
  }
}

variable "allowed_repos" {
  description = "Repositories (owner/name) whose jobs are taken; empty list: all."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.allowed_repos : can(regex("^[^/]+/[^/]+$", r))])
    error_message = "allowed_repos entries must be owner/name."
  }
}

variable "allow_public_repos" {
  description = "Take jobs from public repositories (they run strangers' code on your runners)."
  type        = bool
  default     = false
}

variable "check_job_queued" {
  description = "Check that a job still waits before launching an instance for it (not for the first launch of a job queued in the last 30 s): by the webhook's job records, or by asking GitHub when they cannot be read."
  type        = bool
  default     = true
}

variable "rerun_interrupted_jobs" {
  description = "Re-run jobs whose spot instance was interrupted."
  type        = bool
  default     = false
}

variable "max_reruns" {
  description = "Re-runs per workflow run after spot interruptions."
  type        = number
  default     = 1

  validation {
    condition     = var.max_reruns >= 1
    error_message = "max_reruns must be at least 1."
  }
}

variable "max_redrives" {
  description = "DLQ redrives per message before it stays in the DLQ."
  type        = number
  default     = 3

  validation {
    condition     = var.max_redrives >= 0
    error_message = "max_redrives must be 0 or more."
  }
}

variable "housekeeper_dry_run" {
  description = "The housekeeper logs what it would do and does nothing."
  type        = bool
  default     = false
}

################################################################################
# API
################################################################################

variable "api_throttling_burst_limit" {
  description = "Burst limit of the webhook API stage."
  type        = number
  default     = 100

  validation {
    condition     = var.api_throttling_burst_limit >= 1
    error_message = "api_throttling_burst_limit must be positive."
  }
}

variable "api_throttling_rate_limit" {
  description = "Steady-state requests per second of the webhook API stage."
  type        = number
  default     = 50

  validation {
    condition     = var.api_throttling_rate_limit >= 1
    error_message = "api_throttling_rate_limit must be positive."
  }
}

variable "max_body_bytes" {
  description = "Webhook body size cap (GitHub caps payloads at 25 MB; workflow_job bodies are far smaller)."
  type        = number
  default     = 1048576

  validation {
    condition     = var.max_body_bytes >= 1024
    error_message = "max_body_bytes must be at least 1024."
  }
}

################################################################################
# Runners
################################################################################

variable "vpc_id" {
  description = "VPC of the runner instances."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC id (vpc-...)."
  }
}

variable "subnet_ids" {
  description = "Subnets the runners are spread over (RUNNER_SUBNET_IDS); private subnets with a NAT or VPC endpoints for SSM, EC2 messages and GitHub egress."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids must be a non-empty list of subnet ids."
  }
}

variable "max_runners" {
  description = "Global cap on live runner instances (MAX_RUNNERS)."
  type        = number
  default     = 100

  validation {
    condition     = var.max_runners >= 1
    error_message = "max_runners must be positive."
  }
}

variable "scale_up_headcount_max_age_s" {
  description = "Seconds a scale-up container decides launches on its last list of the live runners (DescribeInstances), with its own launches since, before listing them again (HEADCOUNT_MAX_AGE_S; README \"Scaling\"). A batch that would defer for want of room, meets a job's existing instance or serves a warm pool lists afresh. max_runners may be exceeded by what the other concurrent invocations launched within this age. 0: one list per batch."
  type        = number
  default     = 5

  validation {
    condition     = var.scale_up_headcount_max_age_s >= 0 && var.scale_up_headcount_max_age_s <= 60 && floor(var.scale_up_headcount_max_age_s) == var.scale_up_headcount_max_age_s
    error_message = "scale_up_headcount_max_age_s: a whole number of seconds, 0-60."
  }
}

variable "start_delay_s" {
  description = "Delay of the `start` message after a launch (0-900 s: SQS's limit)."
  type        = number
  default     = 20

  validation {
    condition     = var.start_delay_s >= 0 && var.start_delay_s <= 900
    error_message = "start_delay_s must be between 0 and 900."
  }
}

variable "runner_egress_cidr_blocks" {
  description = "Where runners may connect (HTTPS to GitHub, SSM, package mirrors). The security group allows no inbound traffic."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "runner_version" {
  description = "GitHub Actions runner version the bootstrap installs (GitHub refuses runners older than 2.329.0). Ignored where runner_templates[*].runner_preinstalled is true."
  type        = string
  default     = "2.329.0"

  validation {
    condition     = can(regex("^2\\.(329|3[3-9][0-9]|[4-9][0-9][0-9])\\.[0-9]+$", var.runner_version))
    error_message = "runner_version must be 2.329.0 or newer."
  }
}

variable "runner_sha256" {
  description = "SHA-256 of the runner packages of runner_version by platform (x64, arm64: Linux tarballs; win-x64: Windows zip), as published in the release notes on github.com/actions/runner/releases. The bootstrap refuses a package that does not match, or a platform without a checksum. Set all three when you change runner_version."
  type        = map(string)
  default = {
    "x64"     = "194f1e1e4bd02f80b7e9633fc546084d8d4e19f3928a324d512ea53430102e1d"
    "arm64"   = "56768348b3d643a6a29d4ad71e9bdae0dc0ef1eb01afe0f7a8ee097b039bfaaf"
    "win-x64" = "f60be5ddf373c52fd735388c3478536afd12bfd36d1d0777c6b855b758e70f25"
  }

  validation {
    condition     = alltrue([for k, v in var.runner_sha256 : contains(["x64", "arm64", "win-x64"], k) && can(regex("^[0-9a-f]{64}$", v))])
    error_message = "runner_sha256 keys must be x64, arm64 or win-x64 and values 64 lower-case hex digits."
  }
}

variable "runner_download_url" {
  description = "Base URL the bootstrap downloads the runner packages from: <url>/v<runner_version>/actions-runner-<platform>-<runner_version>.tar.gz (.zip on Windows), the layout of GitHub's releases. Point it at a mirror (S3 behind a VPC endpoint, an internal artifact server) for runners in private subnets without a route to github.com; runner_sha256 still decides what is installed. Ignored where runner_templates[*].runner_preinstalled is true."
  type        = string
  default     = "https://github.com/actions/runner/releases/download"

  validation {
    # Substituted into the user data inside single quotes: no quotes, spaces or backslashes.
    condition     = can(regex("^https?://[^\\s'\"\\\\`$]*[^/\\s'\"\\\\`$]$", var.runner_download_url))
    error_message = "runner_download_url must be an http(s) URL without a trailing slash, quotes, spaces, backslashes, backquotes or $."
  }
}

variable "runner_templates" {
  description = <<-EOT
    Runner templates (DESIGN 2) plus the launch template fields of each. The module creates the launch
    template `<prefix>-<name>` and fills `launch_template` in the document the Lambdas read.
    Fields: name, labels, instance_types, market, max_runners, runner_group_id, scope, os, subnet_ids,
    start_timeout_s, idle_timeout_s, max_lifetime_s (Lambda side, DESIGN 2); ami_id, root_volume_size_gb,
    root_volume_iops, root_volume_throughput, associate_public_ip, security_group_ids, key_name,
    runner_preinstalled, extra_user_data (launch template side); sizing (optional: the per-job sizing
    labels the template admits, README "Sizing jobs": max_cpu, max_ram_gb, families, arch, on_demand,
    max_disk_gb, max_gpu); spot_breaker_threshold, spot_breaker_window_s, spot_breaker_open_s (README
    "Spot circuit breaker": after threshold spot interruptions or capacity refusals within window_s,
    launch on-demand for open_s where the market is spot-then-on-demand; threshold 0: off); pool (optional:
    a warm pool, README "Warm pools": hot and stopped members, 0-100 each, hot_max_idle_s 60-86400 (default
    3600), and a schedule of windows {days, start, end, optional hot/stopped} in an IANA time zone; outside
    every window the pool is empty; at most max_runners members in any window; stopped members need a
    market that allows on-demand).
  EOT
  type = list(object({
    name                   = string
    labels                 = list(string)
    instance_types         = list(string)
    market                 = optional(string, "spot-then-on-demand")
    max_runners            = optional(number, 10)
    runner_group_id        = optional(number, 1)
    scope                  = optional(string, "org")
    os                     = optional(string, "linux")
    subnet_ids             = optional(list(string), [])
    start_timeout_s        = optional(number, 600)
    idle_timeout_s         = optional(number, 300)
    max_lifetime_s         = optional(number, 86400)
    ami_id                 = string
    root_volume_size_gb    = optional(number, 30)
    root_volume_iops       = optional(number, 3000)
    root_volume_throughput = optional(number, 125)
    associate_public_ip    = optional(bool, false)
    security_group_ids     = optional(list(string), [])
    key_name               = optional(string)
    runner_preinstalled    = optional(bool, false)
    extra_user_data        = optional(string, "")
    spot_breaker_threshold = optional(number, 2)
    spot_breaker_window_s  = optional(number, 900)
    spot_breaker_open_s    = optional(number, 1800)
    sizing = optional(object({
      max_cpu     = number
      max_ram_gb  = number
      families    = list(string)
      arch        = optional(string, "x64")
      on_demand   = optional(bool, false)
      max_disk_gb = optional(number, 0)
      max_gpu     = optional(number, 0)
    }))
    pool = optional(object({
      hot            = optional(number, 0)
      stopped        = optional(number, 0)
      hot_max_idle_s = optional(number, 3600)
      owner          = optional(string, "")
      schedule = optional(object({
        timezone = optional(string, "UTC")
        windows = list(object({
          days    = list(string)
          start   = string
          end     = string
          hot     = optional(number)
          stopped = optional(number)
        }))
      }))
    }))
  }))

  validation {
    condition     = length(var.runner_templates) > 0 && length(distinct([for t in var.runner_templates : t.name])) == length(var.runner_templates)
    error_message = "runner_templates must be a non-empty list with unique names."
  }
  validation {
    condition     = alltrue([for t in var.runner_templates : can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", t.name))])
    error_message = "runner template names must be 1-63 characters of a-z, 0-9, '-' or '_'."
  }
  validation {
    condition     = alltrue([for t in var.runner_templates : length(t.labels) > 0 && length(t.labels) <= (t.sizing == null ? 100 : 93) && length(t.instance_types) > 0])
    error_message = "every runner template needs 1-100 labels (generate-jitconfig takes at most 100; 1-93 with sizing, which adds up to 7 per job) and at least one instance type."
  }
  validation {
    condition     = alltrue([for t in var.runner_templates : contains(["spot", "on-demand", "spot-then-on-demand"], t.market) && contains(["org", "repo"], t.scope) && contains(["linux", "windows"], t.os)])
    error_message = "market must be spot, on-demand or spot-then-on-demand; scope org or repo; os linux or windows."
  }
  validation {
    condition     = alltrue([for t in var.runner_templates : t.max_runners >= 1 && t.runner_group_id >= 1 && t.start_timeout_s < t.max_lifetime_s && t.idle_timeout_s < t.max_lifetime_s && t.max_lifetime_s <= 172800 && t.start_timeout_s > 0 && t.idle_timeout_s > 0])
    error_message = "max_runners and runner_group_id must be positive; start/idle timeouts positive and below max_lifetime_s; max_lifetime_s at most 172800 (RunCommand's 48 h)."
  }
  validation {
    condition     = alltrue([for t in var.runner_templates : can(regex("^ami-[0-9a-f]+$", t.ami_id)) && t.root_volume_size_gb >= 8 && t.root_volume_iops >= 3000 && t.root_volume_throughput >= 125])
    error_message = "ami_id must be an AMI id; gp3 root volume at least 8 GB, 3000 IOPS, 125 MB/s."
  }
  validation {
    condition = alltrue([for t in var.runner_templates : (
      t.spot_breaker_threshold >= 0 && t.spot_breaker_threshold <= 1000 && floor(t.spot_breaker_threshold) == t.spot_breaker_threshold
      && t.spot_breaker_window_s >= 1 && t.spot_breaker_window_s <= 86400 && floor(t.spot_breaker_window_s) == t.spot_breaker_window_s
      && t.spot_breaker_open_s >= 1 && t.spot_breaker_open_s <= 86400 && floor(t.spot_breaker_open_s) == t.spot_breaker_open_s
    )])
    error_message = "spot_breaker_threshold must be a whole number from 0 (off) to 1000; spot_breaker_window_s and spot_breaker_open_s whole seconds from 1 to 86400."
  }
  validation {
    condition = alltrue([for t in var.runner_templates : t.sizing == null ? true : (
      t.sizing.max_cpu >= 1 && floor(t.sizing.max_cpu) == t.sizing.max_cpu
      && t.sizing.max_ram_gb >= 1 && floor(t.sizing.max_ram_gb) == t.sizing.max_ram_gb
      && (t.sizing.max_disk_gb == 0 || t.sizing.max_disk_gb >= 8) && floor(t.sizing.max_disk_gb) == t.sizing.max_disk_gb
      && t.sizing.max_gpu >= 0 && floor(t.sizing.max_gpu) == t.sizing.max_gpu
      && contains(["x64", "arm64"], t.sizing.arch)
      && length(t.sizing.families) > 0 && length(distinct(t.sizing.families)) == length(t.sizing.families)
      && alltrue([for f in t.sizing.families : can(regex("^[a-z][a-z0-9-]{0,15}$", f))])
    )])
    error_message = "sizing: max_cpu and max_ram_gb whole numbers of at least 1; max_disk_gb 0 or at least 8; max_gpu 0 or more; arch x64 or arm64 (the AMI's); families a non-empty list of distinct instance families such as m7i or c7g (no sizes)."
  }
  # The pool checks lambdas/jitrunners/pools.py (parse_pool) and config.py (_check_pool) make at
  # load, here so that a plan refuses what the Lambdas would refuse at their next cold start.
  validation {
    condition = alltrue([for t in var.runner_templates : t.pool == null ? true : alltrue(concat(
      [for n in [t.pool.hot, t.pool.stopped] : n >= 0 && n <= 100 && floor(n) == n],
      [for w in try(t.pool.schedule.windows, []) : alltrue([
        for n in [w.hot, w.stopped] : n == null ? true : (n >= 0 && n <= 100 && floor(n) == n)
      ])],
    ))])
    error_message = "pool: hot and stopped (of the pool and of each schedule window) must be whole numbers from 0 to 100."
  }
  validation {
    condition = alltrue([for t in var.runner_templates : t.pool == null ? true : (
      t.pool.hot_max_idle_s >= 60 && t.pool.hot_max_idle_s <= 86400 && floor(t.pool.hot_max_idle_s) == t.pool.hot_max_idle_s
    )])
    error_message = "pool: hot_max_idle_s must be whole seconds from 60 to 86400."
  }
  validation {
    # The zones of the tzdata the Lambda package pins (templates/timezones.txt).
    condition = alltrue([for t in var.runner_templates : try(t.pool.schedule, null) == null ? true : contains(
      split("\n", file("${path.module}/templates/timezones.txt")), t.pool.schedule.timezone
    )])
    error_message = "pool: schedule.timezone must be an IANA time zone name such as UTC or Europe/Berlin (see terraform/templates/timezones.txt)."
  }
  validation {
    condition = alltrue([for t in var.runner_templates : try(t.pool.schedule, null) == null ? true : (
      length(t.pool.schedule.windows) > 0 && alltrue([for w in t.pool.schedule.windows : (
        length(w.days) > 0
        && alltrue([for d in w.days : contains(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], d)])
        && can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", w.start))
        && can(regex("^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$", w.end))
        # HHMM as a number keeps the order of the times of day (24:00 last).
        && try(tonumber(replace(w.end, ":", "")) > tonumber(replace(w.start, ":", "")), false)
      )])
    )])
    error_message = "pool: schedule.windows must be a non-empty list; each window needs days (a non-empty list of mon, tue, wed, thu, fri, sat, sun), start (HH:MM, 00:00 to 23:59) and end (HH:MM after start, 24:00 for midnight), in the schedule's time zone."
  }
  validation {
    # Pool members count against max_runners (0: a drained template, whose pool drains too).
    condition = alltrue([for t in var.runner_templates : t.pool == null ? true : (t.max_runners == 0 || max(concat(
      [t.pool.hot + t.pool.stopped],
      [for w in try(t.pool.schedule.windows, []) : coalesce(w.hot, t.pool.hot) + coalesce(w.stopped, t.pool.stopped)],
    )...) <= t.max_runners)])
    error_message = "pool: a template's pool may want at most max_runners members (hot + stopped, in every schedule window): pool members count against max_runners, and jobs need room too."
  }
  validation {
    condition = alltrue([for t in var.runner_templates : t.pool == null || t.market != "spot" ? true : max(concat(
      [t.pool.stopped],
      [for w in try(t.pool.schedule.windows, []) : coalesce(w.stopped, t.pool.stopped)],
    )...) == 0])
    error_message = "pool: stopped members need a market that allows on-demand (on-demand or spot-then-on-demand): EC2 cannot stop a one-time spot instance, so stopped members launch on-demand."
  }
  validation {
    condition = alltrue([for t in var.runner_templates : t.pool == null || t.scope == "org" ? true : max(concat(
      [t.pool.hot],
      [for w in try(t.pool.schedule.windows, []) : coalesce(w.hot, t.pool.hot)],
    )...) == 0])
    error_message = "pool: hot members need scope org: a hot runner is registered before any job names a repository."
  }
  validation {
    condition     = alltrue([for t in var.runner_templates : t.pool == null ? true : can(regex("^([A-Za-z0-9][A-Za-z0-9-]{0,38})?$", t.pool.owner))])
    error_message = "pool: owner must be a GitHub organization login (or empty: the one owner allowed_owners lists)."
  }
}

################################################################################
# Alarms
################################################################################

variable "create_sns_topic" {
  description = "Create an SNS topic (encrypted) for the alarms."
  type        = bool
  default     = false
}

variable "alarm_actions" {
  description = "Extra alarm action ARNs (e.g. an existing SNS topic)."
  type        = list(string)
  default     = []
}

variable "alarm_launch_failures_threshold" {
  description = "Launch failures in 15 minutes that raise the launch-failures alarm."
  type        = number
  default     = 5
}

variable "alarm_zombies_threshold" {
  description = "Zombie terminations (housekeeper) in an hour that raise the zombies alarm."
  type        = number
  default     = 3
}

variable "alarm_pool_empty_periods" {
  description = "Consecutive 10-minute periods a warm pool must hold no free member while short of its target before its pool-empty alarm fires (one alarm per template and kind of member with a pool; README \"Warm pools\"). The housekeeper reports the pools each pass: keep housekeeper_schedule at most 10 minutes apart."
  type        = number
  default     = 3

  validation {
    condition     = var.alarm_pool_empty_periods >= 1 && var.alarm_pool_empty_periods <= 144 && floor(var.alarm_pool_empty_periods) == var.alarm_pool_empty_periods
    error_message = "alarm_pool_empty_periods must be a whole number from 1 to 144 (24 hours)."
  }
}

variable "max_receive_count" {
  description = "Receives of a job message before SQS moves it to the DLQ. A `start` message is received once per retry while the instance's SSM agent comes online, so keep this above start_timeout_s / back-off."
  type        = number
  default     = 20

  validation {
    condition     = var.max_receive_count >= 5 && var.max_receive_count <= 1000
    error_message = "max_receive_count must be between 5 and 1000."
  }
}

variable "function_reserved_concurrency" {
  description = "Reserved concurrency of scale-down, redrive, housekeeper and budget-guard (redrive, housekeeper and budget-guard default to 1: one at a time)."
  type        = map(number)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.function_reserved_concurrency : contains(["scale-down", "redrive", "housekeeper", "budget-guard"], k) && v >= 1])
    error_message = "function_reserved_concurrency keys must be scale-down, redrive, housekeeper or budget-guard, values at least 1."
  }
}

variable "runner_egress_ports" {
  description = "TCP ports runners may reach on runner_egress_cidr_blocks. Default 443 only (GitHub, SSM, HTTPS package mirrors): plain HTTP is not needed by the runner and lets a job fetch unauthenticated content. Add 80 if your jobs' package mirrors are HTTP only (Ubuntu's default apt sources are)."
  type        = list(number)
  default     = [443]

  validation {
    condition     = alltrue([for p in var.runner_egress_ports : p >= 1 && p <= 65535])
    error_message = "runner_egress_ports must be TCP ports."
  }
}

variable "ami_owners" {
  description = "Owners searched for the runner templates' AMIs (the module reads each AMI's root device name). 099720109477 is Canonical (Ubuntu)."
  type        = list(string)
  default     = ["self", "amazon", "aws-marketplace", "099720109477"]

  validation {
    condition     = length(var.ami_owners) > 0
    error_message = "ami_owners must not be empty."
  }
}

################################################################################
# Budget guardrail
################################################################################

variable "budget_monthly_amount" {
  description = "Monthly AWS Budget (in budget_currency) on the cost of everything tagged jitrunners:prefix = prefix (instances, volumes, Lambdas, queues...). null: no monthly budget. With either amount set the module creates the budget(s), an encrypted SNS topic they notify and its subscription by the budget guard."
  type        = number
  default     = null

  validation {
    condition     = var.budget_monthly_amount == null || try(var.budget_monthly_amount > 0, false)
    error_message = "budget_monthly_amount must be null or positive."
  }
}

variable "budget_daily_amount" {
  description = "Daily AWS Budget (in budget_currency) on the same cost; null: none. Budgets evaluates daily costs once or a few times a day: the guard acts hours after a burst, not minutes."
  type        = number
  default     = null

  validation {
    condition     = var.budget_daily_amount == null || try(var.budget_daily_amount > 0, false)
    error_message = "budget_daily_amount must be null or positive."
  }
}

variable "budget_currency" {
  description = "Unit of the budget amounts (AWS Budgets' cost unit, normally USD)."
  type        = string
  default     = "USD"

  validation {
    condition     = can(regex("^[A-Z]{3}$", var.budget_currency))
    error_message = "budget_currency must be a three-letter currency code."
  }
}

variable "budget_threshold_percent" {
  description = "Percentage of a budget the ACTUAL cost must exceed for the notification the guard acts on."
  type        = number
  default     = 100

  validation {
    condition     = var.budget_threshold_percent > 0 && var.budget_threshold_percent <= 1000
    error_message = "budget_threshold_percent must be above 0 and at most 1000."
  }
}

variable "budget_action" {
  description = "What the budget guard does when a budget's ACTUAL cost crosses the threshold: notify (log, metric, alarm, the topic's subscribers), spot-only (launch spot capacity only: no on-demand, no fallback) or kill-switch (stop taking and starting jobs; queued jobs wait). Lifted only by an operator: `jitrunners spot-only off` / `jitrunners kill-switch off`."
  type        = string
  default     = "notify"

  validation {
    condition     = contains(["notify", "spot-only", "kill-switch"], var.budget_action)
    error_message = "budget_action must be notify, spot-only or kill-switch."
  }
}

variable "budget_notification_emails" {
  description = "Email addresses AWS Budgets notifies beside the guard's topic (at most 10)."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.budget_notification_emails) <= 10
    error_message = "AWS Budgets takes at most 10 email subscribers per notification."
  }
}

variable "budget_activate_cost_allocation_tag" {
  description = "Activate jitrunners:prefix as a cost allocation tag (Budgets filters only on active tags). Only the management (payer) account of an organization may; leave false and activate it there (Billing console, Cost allocation tags) otherwise."
  type        = bool
  default     = false
}
