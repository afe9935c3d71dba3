# KMS key, runner templates and the secrets in SSM Parameter Store (SecureString).

resource "aws_kms_key" "this" {
  count = var.kms_key_arn == null ? 1 : 0

  description             = "${local.prefix}: SSM secrets, JIT configs, queues, logs, alarms"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "this" {
  count = var.kms_key_arn == null ? 1 : 0

  name          = "alias/${local.prefix}"
  target_key_id = aws_kms_key.this[0].key_id
}

locals {
  kms_key_arn = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.this[0].arn
}

# The account administers the key (and IAM policies grant its use); the services that encrypt on
# our behalf are named, each limited to our resources.
data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_111:A key policy's Resource "*" means this key only; writes are limited to the account and named services.
  # checkov:skip=CKV_AWS_356:A key policy's Resource "*" means this key only.
  # checkov:skip=CKV_AWS_109:The account root administers its own key (the AWS default key policy); service principals are limited by conditions.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsOurLogGroups"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/lambda/${local.prefix}-*",
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/${local.prefix}/*",
      ]
    }
  }

  statement {
    sid       = "AlarmsAndEventsUseEncryptedTopicAndQueues"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
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
