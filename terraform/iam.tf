# One least-privilege role per function, and the runner instances' role. The policy documents are
# in documents.tf (rendered by the tests and the local stack, which evaluates every request the
# Lambdas and the instances make against them).

resource "aws_iam_role" "function" {
  for_each = local.functions

  name               = "${local.function_names[each.key]}-lambda"
  description        = "${local.prefix} ${each.key} function"
  assume_role_policy = local.assume_role_policies.lambda
  tags               = local.tags
}

# What every function needs: its own log group, tracing, the async DLQ where it has one.
resource "aws_iam_role_policy" "lambda_base" {
  for_each = local.functions

  name   = "base"
  role   = aws_iam_role.function[each.key].id
  policy = local.lambda_base_policies[each.key]
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions

  name   = "function"
  role   = aws_iam_role.function[each.key].id
  policy = local.function_policies[each.key]
}

resource "aws_iam_role" "runner" {
  name               = local.runner_role_name
  description        = "${local.prefix} runner instances: SSM agent and their own JIT config only"
  assume_role_policy = local.assume_role_policies.ec2
  tags               = local.tags
}

resource "aws_iam_role_policy" "runner" {
  for_each = local.runner_policies

  name   = each.key
  role   = aws_iam_role.runner.id
  policy = each.value
}

resource "aws_iam_instance_profile" "runner" {
  name = local.runner_role_name
  role = aws_iam_role.runner.name
  tags = local.tags
}

# The runner role's two policies became one for_each (0.1 deployments keep their policies).
moved {
  from = aws_iam_role_policy.runner_ssm_agent
  to   = aws_iam_role_policy.runner["ssm-agent"]
}

moved {
  from = aws_iam_role_policy.runner
  to   = aws_iam_role_policy.runner["own-jit-config"]
}
