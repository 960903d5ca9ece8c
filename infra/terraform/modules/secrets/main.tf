# The shop's secrets, generated here (random provider) and kept in Secrets Manager under a
# customer-managed KMS key. Nothing secret is a literal or a variable default.
#
# Every generated value sticks to letters and digits so that it can go into a URL
# (DATABASE_URL, REDIS_URL) unescaped and meets RDS's and ElastiCache's character rules; the
# lengths make up for the smaller alphabet. The values are also in the Terraform state, which
# is why the state bucket is encrypted (see versions.tf and the README).

module "key" {
  source      = "../kms"
  name        = "${var.name}-secrets"
  description = "Secrets Manager secrets of ${var.name}"
  tags        = var.tags
}

locals {
  # Each secret by purpose: its name and description, and the length of its generated password.
  secrets = {
    # SHOP_JWT_SECRET: the HS256 key, at least 32 bytes (64 characters here).
    jwt = {
      name        = "${var.name}/jwt-secret"
      description = "SHOP_JWT_SECRET of ${var.name}: HS256 key of the access tokens"
      length      = 64
    }
    database = {
      name        = "${var.name}/database"
      description = "PostgreSQL master credentials of ${var.name}"
      length      = 40
    }
    redis = {
      name        = "${var.name}/redis-auth-token"
      description = "AUTH token of the ElastiCache replication group of ${var.name}"
      length      = 64
    }
    # MSK reads SASL/SCRAM users from secrets named AmazonMSK_... under a customer-managed key.
    kafka = {
      name        = "AmazonMSK_${var.name}"
      description = "SASL/SCRAM user of the shop on the MSK cluster of ${var.name}"
      length      = 40
    }
  }

  # What each secret holds: the password alone, or JSON with the user name where the reader
  # (RDS's conventions, MSK) wants both.
  secret_strings = {
    jwt = random_password.this["jwt"].result
    database = jsonencode({
      engine   = "postgres"
      username = var.database_username
      password = random_password.this["database"].result
    })
    redis = random_password.this["redis"].result
    kafka = jsonencode({
      username = var.kafka_username
      password = random_password.this["kafka"].result
    })
  }
}

resource "random_password" "this" {
  for_each = local.secrets
  length   = each.value.length
  special  = false
}

# Rotation: the shop reads these at start from the Kubernetes secret (see the README), so a
# rotation is a rollout, done by hand: replace the random_password, apply, render the overlay again.
resource "aws_secretsmanager_secret" "this" {
  #checkov:skip=CKV2_AWS_57:The shop reads every one at start, so a rotation is a rollout: one HS256 key (rotating it logs every user out), the database password (would need a rotation Lambda), the ElastiCache AUTH token (changes through auth_token_update_strategy ROTATE), the SCRAM user MSK reads. Rotated by hand (see README).
  for_each                = local.secrets
  name                    = each.value.name
  description             = each.value.description
  kms_key_id              = module.key.key_arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "this" {
  for_each      = aws_secretsmanager_secret.this
  secret_id     = each.value.id
  secret_string = local.secret_strings[each.key]
}
