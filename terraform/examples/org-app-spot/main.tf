# Organization runners, GitHub App auth, x64 spot instances (on-demand fallback).
#   make package && cd terraform/examples/org-app-spot && terraform init && terraform apply
# Then set the secrets (see the module README) and point the GitHub App's webhook at webhook_url.

provider "aws" {
  region = var.region
}

# The newest Amazon Linux 2023 AMIs (AWS CLI and SSM agent included).
data "aws_ssm_parameter" "al2023_x64" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

module "jitrunners" {
  source = "../.."

  prefix              = "jitrunners"
  lambda_package_path = "${path.module}/../../../dist/jitrunners-lambda-arm64.zip"
  vpc_id              = var.vpc_id
  subnet_ids          = var.subnet_ids

  github_app_id  = var.github_app_id
  allowed_owners = [var.github_org]
  max_runners    = 50

  runner_templates = [
    {
      name                = "linux-x64"
      labels              = ["self-hosted", "linux", "x64", "linux-x64"]
      instance_types      = ["m7i.large", "m6i.large", "m5.large", "m7a.large"]
      market              = "spot-then-on-demand"
      max_runners         = 40
      runner_group_id     = 1
      scope               = "org"
      ami_id              = data.aws_ssm_parameter.al2023_x64.insecure_value
      root_volume_size_gb = 40
    },
    {
      name             = "linux-x64-large"
      labels           = ["self-hosted", "linux", "x64", "large"]
      instance_types   = ["c7i.2xlarge", "c6i.2xlarge", "c5.2xlarge"]
      market           = "spot"
      max_runners      = 10
      idle_timeout_s   = 600
      max_lifetime_s   = 21600
      ami_id           = data.aws_ssm_parameter.al2023_x64.insecure_value
      root_volume_iops = 6000
    },
  ]

  create_sns_topic = true
  tags             = { team = "platform" }
}
