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

# SHOP_JWT_SECRET: the HS256 key, at least 32 bytes (64 characters here).
resource "random_password" "jwt" {
  length  = 64
  special = false
}

resource "random_password" "database" {
  length  = 40
  special = false
}

resource "random_password" "redis" {
  length  = 64
  special = false
}

resource "random_password" "kafka" {
  length  = 40
  special = false
}

# Rotation: the shop reads these at start from the Kubernetes secret (see the README), so a
# rotation is a rollout, done by hand: taint the random_password, apply, render the overlay again.
resource "aws_secretsmanager_secret" "jwt" {
  #checkov:skip=CKV2_AWS_57:The shop holds one HS256 key and reads it at start; an automatic rotation would log every user out and needs a rollout. Rotated by hand (see README).
  name                    = "${var.name}/jwt-secret"
  description             = "SHOP_JWT_SECRET of ${var.name}: HS256 key of the access tokens"
  kms_key_id              = module.key.key_arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "jwt" {
  secret_id     = aws_secretsmanager_secret.jwt.id
  secret_string = random_password.jwt.result
}

resource "aws_secretsmanager_secret" "database" {
  #checkov:skip=CKV2_AWS_57:The shop reads DATABASE_URL at start; rotating the password needs a rotation Lambda and a rollout of every role. Rotated by hand (see README).
  name                    = "${var.name}/database"
  description             = "PostgreSQL master credentials of ${var.name}"
  kms_key_id              = module.key.key_arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "database" {
  secret_id = aws_secretsmanager_secret.database.id
  secret_string = jsonencode({
    engine   = "postgres"
    username = var.database_username
    password = random_password.database.result
  })
}

resource "aws_secretsmanager_secret" "redis" {
  #checkov:skip=CKV2_AWS_57:ElastiCache's AUTH token changes through Terraform (auth_token_update_strategy ROTATE) and a rollout, not a rotation Lambda. Rotated by hand (see README).
  name                    = "${var.name}/redis-auth-token"
  description             = "AUTH token of the ElastiCache replication group of ${var.name}"
  kms_key_id              = module.key.key_arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "redis" {
  secret_id     = aws_secretsmanager_secret.redis.id
  secret_string = random_password.redis.result
}

# MSK reads SASL/SCRAM users from secrets named AmazonMSK_... under a customer-managed key.
resource "aws_secretsmanager_secret" "kafka" {
  #checkov:skip=CKV2_AWS_57:MSK reads the SCRAM user from this secret; a rotation needs the shop's clients rolled out with the new password. Rotated by hand (see README).
  name                    = "AmazonMSK_${var.name}"
  description             = "SASL/SCRAM user of the shop on the MSK cluster of ${var.name}"
  kms_key_id              = module.key.key_arn
  recovery_window_in_days = var.recovery_window_in_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "kafka" {
  secret_id = aws_secretsmanager_secret.kafka.id
  secret_string = jsonencode({
    username = var.kafka_username
    password = random_password.kafka.result
  })
}
