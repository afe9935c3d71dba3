# SQS: the job queue, its DLQ, and the DLQ of failed EventBridge/async deliveries.

locals {
  # Queued jobs must outlive GitHub's 24 h queue life (a kill switch may hold them that long).
  queue_retention_s = 4 * 24 * 3600
  dlq_retention_s   = 14 * 24 * 3600
}

resource "aws_sqs_queue" "jobs" {
  name                              = "${local.prefix}-jobs"
  visibility_timeout_seconds        = 6 * var.scale_up_timeout_s
  message_retention_seconds         = local.queue_retention_s
  receive_wait_time_seconds         = 20
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.jobs_dlq.arn
    maxReceiveCount     = var.max_receive_count
  })
  tags = local.tags
}

resource "aws_sqs_queue" "jobs_dlq" {
  name                              = "${local.prefix}-jobs-dlq"
  message_retention_seconds         = local.dlq_retention_s
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = local.tags
}

resource "aws_sqs_queue_redrive_allow_policy" "jobs_dlq" {
  queue_url = aws_sqs_queue.jobs_dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.jobs.arn]
  })
}

resource "aws_sqs_queue" "events_dlq" {
  name                              = "${local.prefix}-events-dlq"
  message_retention_seconds         = local.dlq_retention_s
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = local.tags
}

# Queue policies: documents.tf local.queue_policies.
resource "aws_sqs_queue_policy" "this" {
  for_each = {
    jobs       = aws_sqs_queue.jobs.id
    jobs_dlq   = aws_sqs_queue.jobs_dlq.id
    events_dlq = aws_sqs_queue.events_dlq.id
  }

  queue_url = each.value
  policy    = local.queue_policies[each.key]
}

moved {
  from = aws_sqs_queue_policy.jobs
  to   = aws_sqs_queue_policy.this["jobs"]
}

moved {
  from = aws_sqs_queue_policy.jobs_dlq
  to   = aws_sqs_queue_policy.this["jobs_dlq"]
}

moved {
  from = aws_sqs_queue_policy.events_dlq
  to   = aws_sqs_queue_policy.this["events_dlq"]
}
