# Per runner template: a launch template; shared: security group and RunCommand output logs.

data "aws_ami" "runner" {
  for_each = local.runner_templates

  owners = var.ami_owners
  filter {
    name   = "image-id"
    values = [each.value.ami_id]
  }
}

resource "aws_security_group" "runner" {
  # checkov:skip=CKV2_AWS_5:Attached by every launch template's network interface (aws_launch_template.runner); the graph check misses it through module calls.
  name        = "${local.prefix}-runner"
  description = "${local.prefix} runners: no inbound traffic (SSM needs none); egress to GitHub and package mirrors"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${local.prefix}-runner" })
}

resource "aws_vpc_security_group_egress_rule" "runner" {
  for_each = { for pair in setproduct(var.runner_egress_cidr_blocks, var.runner_egress_ports) : "${pair[0]}:${pair[1]}" => pair }

  security_group_id = aws_security_group.runner.id
  description       = "Runner egress to ${each.value[0]} on TCP ${each.value[1]}"
  cidr_ipv4         = each.value[0]
  ip_protocol       = "tcp"
  from_port         = each.value[1]
  to_port           = each.value[1]
}

resource "aws_cloudwatch_log_group" "runner_commands" {
  # checkov:skip=CKV_AWS_338:Retention is the operator's choice (log_retention_days, default 30): these are operational logs; the audit trail is CloudTrail's.
  name              = local.ssm_output_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_launch_template" "runner" {
  for_each = local.runner_templates

  name                   = "${local.prefix}-${each.key}"
  description            = "${local.prefix} runner template ${each.key}"
  image_id               = each.value.ami_id
  key_name               = each.value.key_name
  update_default_version = true
  ebs_optimized          = true
  # A bootstrap that powers the instance off must not leave it behind.
  instance_initiated_shutdown_behavior = "terminate"
  user_data                            = base64encode(local.user_data[each.key])

  iam_instance_profile {
    arn = aws_iam_instance_profile.runner.arn
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = data.aws_ami.runner[each.key].root_device_name
    ebs {
      volume_type           = "gp3"
      volume_size           = each.value.root_volume_size_gb
      iops                  = each.value.root_volume_iops
      throughput            = each.value.root_volume_throughput
      encrypted             = true
      delete_on_termination = true
    }
  }

  network_interfaces {
    device_index                = 0
    associate_public_ip_address = each.value.associate_public_ip
    security_groups             = concat([aws_security_group.runner.id], each.value.security_group_ids)
    delete_on_termination       = true
  }

  monitoring {
    enabled = true
  }

  # Each launched resource carries our prefix from its creation: the scale-up policy allows a
  # launch only with aws:RequestTag/jitrunners:prefix on the instance, its volumes and interfaces.
  dynamic "tag_specifications" {
    for_each = toset(["instance", "volume", "network-interface"])
    content {
      resource_type = tag_specifications.value
      tags          = local.launch_template_tags[each.key]
    }
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = length(local.user_data[each.key]) <= 16384
      error_message = "User data of runner template ${each.key} exceeds EC2's 16 KB limit."
    }
  }
}
