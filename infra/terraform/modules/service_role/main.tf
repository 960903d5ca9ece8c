# An IAM role that an AWS service assumes (the EKS control plane, the EC2 nodes, RDS enhanced
# monitoring, VPC flow logs): AWS-managed policies attached by name, inline policies by name.
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = var.assume_actions
    principals {
      type        = "Service"
      identifiers = [var.service]
    }

    # The confused-deputy guard, where the service sets aws:SourceAccount.
    dynamic "condition" {
      for_each = var.require_source_account ? [data.aws_caller_identity.current.account_id] : []
      content {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [condition.value]
      }
    }
  }
}

resource "aws_iam_role" "this" {
  name               = var.name
  description        = var.description
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "this" {
  for_each   = toset(var.aws_managed_policies)
  role       = aws_iam_role.this.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/${each.value}"
}

resource "aws_iam_role_policy" "this" {
  for_each = var.policies
  name     = each.key
  role     = aws_iam_role.this.id
  policy   = each.value
}
