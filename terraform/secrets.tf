# KMS key, runner templates and the secrets in SSM Parameter Store (SecureString).

resource "aws_kms_key" "this" {
  count = var.kms_key_arn == null ? 1 : 0

  description             = "${local.prefix}: SSM secrets, JIT configs, queues, logs, alarms"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  # checkov:skip=CKV2_AWS_64:The key policy is documents.tf local.kms_key_policy; checkov cannot read a policy from a local value.
  policy = local.kms_key_policy
  tags   = local.tags
}

resource "aws_kms_alias" "this" {
  count = var.kms_key_arn == null ? 1 : 0

  name          = "alias/${local.prefix}"
  target_key_id = aws_kms_key.this[0].key_id
}

locals {
  kms_key_arn = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.this[0].arn
}

resource "aws_ssm_parameter" "runner_templates" {
  name        = local.templates_param_name
  description = "${local.prefix}: runner templates (DESIGN 2), read by the Lambdas (RUNNER_TEMPLATES_PARAM)"
  # checkov:skip=CKV2_AWS_34:Not a secret: labels, instance types and limits; the Lambdas read it without decryption.
  type  = "String"
  tier  = length(local.templates_document) > 4096 ? "Advanced" : "Standard"
  value = local.templates_document
  tags  = local.tags
}

# Each secret: managed by Terraform when its variable is set, otherwise created with a placeholder
# that Terraform never overwrites (set the value with `aws ssm put-parameter --overwrite`), so the
# secret need never pass through Terraform state.
resource "aws_ssm_parameter" "webhook_secret" {
  count = nonsensitive(var.webhook_secret != null) ? 1 : 0

  name        = local.webhook_secret_name
  description = "${local.prefix}: GitHub webhook secret (one per line during a rotation)"
  type        = "SecureString"
  key_id      = local.kms_key_arn
  value       = var.webhook_secret
  tags        = local.tags
}

resource "aws_ssm_parameter" "webhook_secret_placeholder" {
  count = nonsensitive(var.webhook_secret == null) ? 1 : 0

  name        = local.webhook_secret_name
  description = "${local.prefix}: GitHub webhook secret (one per line during a rotation); set it outside Terraform"
  type        = "SecureString"
  key_id      = local.kms_key_arn
  value       = "REPLACE_ME"
  tags        = local.tags

  lifecycle {
    ignore_changes = [value]
  }
}

resource "aws_ssm_parameter" "github_app_key" {
  count = local.app_mode && nonsensitive(var.github_app_private_key != null) ? 1 : 0

  name        = local.github_app_key_name
  description = "${local.prefix}: GitHub App private key (PEM)"
  type        = "SecureString"
  tier        = "Advanced" # a 4096-bit PEM is larger than 4 KB
  key_id      = local.kms_key_arn
  value       = var.github_app_private_key
  tags        = local.tags
}

resource "aws_ssm_parameter" "github_app_key_placeholder" {
  count = local.app_mode && nonsensitive(var.github_app_private_key == null) ? 1 : 0

  name        = local.github_app_key_name
  description = "${local.prefix}: GitHub App private key (PEM); set it outside Terraform"
  type        = "SecureString"
  tier        = "Advanced"
  key_id      = local.kms_key_arn
  value       = "REPLACE_ME"
  tags        = local.tags

  lifecycle {
    ignore_changes = [value]
  }
}

# Further GitHub Apps' private keys (var.github_extra_app_ids): set outside Terraform.
resource "aws_ssm_parameter" "github_extra_app_key" {
  for_each = local.github_extra_app_key_names

  name        = each.value
  description = "${local.prefix}: private key (PEM) of further GitHub App ${each.key}; set it outside Terraform"
  type        = "SecureString"
  tier        = "Advanced" # a 4096-bit PEM is larger than 4 KB
  key_id      = local.kms_key_arn
  value       = "REPLACE_ME"
  tags        = local.tags

  lifecycle {
    ignore_changes = [value]
  }
}

resource "aws_ssm_parameter" "github_token" {
  count = !local.app_mode && nonsensitive(var.github_token != null) ? 1 : 0

  name        = local.github_token_name
  description = "${local.prefix}: GitHub token (token mode)"
  type        = "SecureString"
  key_id      = local.kms_key_arn
  value       = var.github_token
  tags        = local.tags
}

resource "aws_ssm_parameter" "github_token_placeholder" {
  count = !local.app_mode && nonsensitive(var.github_token == null) ? 1 : 0

  name        = local.github_token_name
  description = "${local.prefix}: GitHub token (token mode); set it outside Terraform"
  type        = "SecureString"
  key_id      = local.kms_key_arn
  value       = "REPLACE_ME"
  tags        = local.tags

  lifecycle {
    ignore_changes = [value]
  }
}
