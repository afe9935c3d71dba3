variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "eu-west-1"
}

variable "vpc_id" {
  description = "VPC of the runners."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets (with NAT) of the runners."
  type        = list(string)
}

variable "repository" {
  description = "The repository (owner/name) whose jobs the runners take."
  type        = string
}

variable "github_token" {
  description = "Fine-grained token with Administration read/write and Actions read on the repository."
  type        = string
  sensitive   = true
}

variable "webhook_secret" {
  description = "Secret of the repository webhook."
  type        = string
  sensitive   = true
}

variable "kill_switch" {
  description = "Stop taking and starting jobs (queued jobs wait in the queue)."
  type        = bool
  default     = false
}
