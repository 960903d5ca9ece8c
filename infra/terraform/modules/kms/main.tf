# A customer-managed KMS key with yearly rotation and an explicit key policy: the account's IAM
# principals administer and use it through their IAM policies (so no wildcard principal), and,
# when asked, CloudWatch Logs may encrypt this account's log groups with it.
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"

  account_statement = [{
    Sid       = "AccountAdministersThroughIam"
    Effect    = "Allow"
    Principal = { AWS = local.account_root }
    Action    = "kms:*"
    Resource  = "*"
  }]

  logs_statements = [for region in compact([var.cloudwatch_logs_region]) : {
    Sid       = "CloudWatchLogsOfThisAccount"
    Effect    = "Allow"
    Principal = { Service = "logs.${region}.amazonaws.com" }
    Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    Resource  = "*"
    Condition = {
      ArnLike = {
        "kms:EncryptionContext:aws:logs:arn" = "arn:${data.aws_partition.current.partition}:logs:${region}:${data.aws_caller_identity.current.account_id}:log-group:*"
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
