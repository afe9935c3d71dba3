# Webhook replay guard: the webhook claims each X-GitHub-Delivery id here (conditional PutItem)
# before it enqueues, so GitHub's duplicates and replayed captures enqueue nothing. A table, not
# Parameter Store: a burst of deliveries would throttle Parameter Store's write rate.

resource "aws_dynamodb_table" "deliveries" {
  # checkov:skip=CKV_AWS_28:Claims live three days and are recreated by GitHub's redelivery; a restore point would bring nothing back worth having.
  # checkov:skip=CKV2_AWS_16:On-demand capacity scales by itself; there is no provisioned capacity to auto-scale.
  name         = "${local.prefix}-deliveries"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "delivery_id"

  attribute {
    name = "delivery_id"
    type = "S"
  }

  # Expired claims are deleted by DynamoDB (within days); the webhook treats them as absent.
  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn
  }

  point_in_time_recovery {
    enabled = false
  }

  tags = local.tags
}
