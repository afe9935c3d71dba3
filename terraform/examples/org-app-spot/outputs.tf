output "webhook_url" {
  description = "Webhook URL for the GitHub App."
  value       = module.jitrunners.webhook_url
}

output "secret_parameters" {
  description = "SSM parameters to fill with the webhook secret and the App's private key."
  value       = module.jitrunners.secret_parameters
}

output "alarm_topic_arn" {
  description = "Subscribe to this topic for the alarms."
  value       = module.jitrunners.alarm_topic_arn
}
