# HTTP API: POST /webhook -> the webhook Lambda's `live` alias, with stage throttling and access logs.

resource "aws_apigatewayv2_api" "webhook" {
  name          = "${local.prefix}-webhook"
  description   = "GitHub workflow_job webhooks for ${local.prefix}"
  protocol_type = "HTTP"
  tags          = local.tags
}

resource "aws_apigatewayv2_integration" "webhook" {
  api_id                 = aws_apigatewayv2_api.webhook.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_alias.live["webhook"].invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 10000
}

resource "aws_apigatewayv2_route" "webhook" {
  # checkov:skip=CKV_AWS_309:GitHub cannot sign requests for IAM or present a JWT; every delivery is authenticated by its X-Hub-Signature-256 HMAC in the function, which fails closed.
  api_id             = aws_apigatewayv2_api.webhook.id
  route_key          = "POST /webhook"
  target             = "integrations/${aws_apigatewayv2_integration.webhook.id}"
  authorization_type = "NONE"
}

resource "aws_cloudwatch_log_group" "api" {
  # checkov:skip=CKV_AWS_338:Retention is the operator's choice (log_retention_days, default 30): these are operational logs; the audit trail is CloudTrail's.
  name              = "/${local.prefix}/api-access"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.webhook.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = var.api_throttling_burst_limit
    throttling_rate_limit  = var.api_throttling_rate_limit
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api.arn
    format = jsonencode({
      requestId = "$context.requestId"
      ip        = "$context.identity.sourceIp"
      time      = "$context.requestTime"
      route     = "$context.routeKey"
      status    = "$context.status"
      latencyMs = "$context.responseLatency"
      error     = "$context.integrationErrorMessage"
    })
  }

  tags = local.tags
}

resource "aws_lambda_permission" "api" {
  statement_id  = "AllowApiGatewayWebhookRoute"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["webhook"].function_name
  qualifier     = aws_lambda_alias.live["webhook"].name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.webhook.execution_arn}/*/*/webhook"
}
