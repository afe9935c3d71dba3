output "webhook_url" {
  description = "Payload URL of the repository webhook (event: Workflow jobs)."
  value       = module.jitrunners.webhook_url
}

output "function_names" {
  description = "The Lambda functions."
  value       = module.jitrunners.function_names
}
