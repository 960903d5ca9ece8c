# A customer-managed KMS key with yearly rotation and an explicit key policy: the account's IAM
# principals administer and use it through their IAM policies (so no wildcard principal). With
# log_groups, it also makes those CloudWatch Logs log groups, encrypted with the key and kept
# log_retention_days, and lets CloudWatch Logs of this account and region use the key for them:
# every log group of the configuration is made here, so none is unencrypted or kept forever.
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  account_statement = [{
    Sid       = "AccountAdministersThroughIam"
    Effect    = "Allow"
    Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
    Action    = "kms:*"
    Resource  = "*"
  }]

  # The statement for CloudWatch Logs, where the key has log groups; a for expression, whose tuple
  # concat can join to account_statement (the two statements' objects differ in type).
  logs_regions = length(var.log_groups) == 0 ? [] : [local.region]
  logs_statements = [for region in local.logs_regions : {
    Sid       = "CloudWatchLogsOfThisAccount"
    Effect    = "Allow"
    Principal = { Service = "logs.${region}.amazonaws.com" }
    Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    Resource  = "*"
    Condition = {
      ArnLike = {
        "kms:EncryptionContext:aws:logs:arn" = "arn:${local.partition}:logs:${region}:${local.account_id}:log-group:*"
      }
    }
  }]
}

resource "aws_kms_key" "this" {
  description             = var.description
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.deletion_window_in_days
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = concat(local.account_statement, local.logs_statements)
  })
  tags = var.tags
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

# Made before the services that write to them (callers use log_group_names or log_group_arns, or
# depend on the module), so that no service makes one itself, unencrypted and kept forever.
resource "aws_cloudwatch_log_group" "this" {
  for_each          = var.log_groups
  name              = each.value
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
  tags              = var.tags
}
