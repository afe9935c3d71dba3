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

variable "github_app_id" {
  description = "Id of the GitHub App installed on the organization."
  type        = string
}

variable "github_org" {
  description = "The organization whose jobs the runners take."
  type        = string
}
