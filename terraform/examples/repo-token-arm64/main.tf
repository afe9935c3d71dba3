# Repository runners, token auth, arm64 (Graviton) instances; secrets passed as sensitive variables.
#   make package && cd terraform/examples/repo-token-arm64 && terraform init && terraform apply

provider "aws" {
  region = var.region
}

data "aws_ssm_parameter" "al2023_arm64" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
}

module "jitrunners" {
  source = "../.."

  prefix              = "jitrunners-repo"
  lambda_package_path = "${path.module}/../../../dist/jitrunners-lambda-arm64.zip"
  vpc_id              = var.vpc_id
  subnet_ids          = var.subnet_ids

  # Token mode: no github_app_id. The token needs Administration read/write on the repository.
  github_token   = var.github_token
  webhook_secret = var.webhook_secret
  allowed_repos  = [var.repository]
  max_runners    = 10

  runner_templates = [
    {
      name                = "linux-arm64"
      labels              = ["self-hosted", "linux", "arm64"]
      instance_types      = ["m7g.large", "m6g.large", "c7g.large"]
      market              = "spot-then-on-demand"
      max_runners         = 10
      scope               = "repo"
      ami_id              = data.aws_ssm_parameter.al2023_arm64.insecure_value
      root_volume_size_gb = 30
    },
  ]

  kill_switch = var.kill_switch
}
