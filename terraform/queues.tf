# SQS: the job queue, its DLQ, the teardown queue (EventBridge events for scale-down) and its DLQ,
# and the DLQ of failed EventBridge/async deliveries.

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

# The EventBridge events about our instances (events.tf), read by scale-down in batches.
resource "aws_sqs_queue" "teardown" {
  name = "${local.prefix}-teardown"
  # AWS's advice for an event source: at least six times the function's timeout.
  visibility_timeout_seconds        = 6 * local.functions["scale-down"].timeout
  message_retention_seconds         = local.queue_retention_s
  receive_wait_time_seconds         = 20
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.teardown_dlq.arn
    maxReceiveCount     = var.scale_down_max_receive_count
  })
  tags = local.tags
}

resource "aws_sqs_queue" "teardown_dlq" {
  name                              = "${local.prefix}-teardown-dlq"
  message_retention_seconds         = local.dlq_retention_s
  kms_master_key_id                 = local.kms_key_arn
  kms_data_key_reuse_period_seconds = 300
  tags                              = local.tags
}

# SQS's own redrive (console or StartMessageMoveTask) may move them back once the cause is fixed;
# the redrive function handles job messages only.
resource "aws_sqs_queue_redrive_allow_policy" "teardown_dlq" {
  queue_url = aws_sqs_queue.teardown_dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.teardown.arn]
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
    jobs         = aws_sqs_queue.jobs.id
    jobs_dlq     = aws_sqs_queue.jobs_dlq.id
    events_dlq   = aws_sqs_queue.events_dlq.id
    teardown     = aws_sqs_queue.teardown.id
    teardown_dlq = aws_sqs_queue.teardown_dlq.id
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
