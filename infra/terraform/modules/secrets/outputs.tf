output "kms_key_arn" {
  description = "KMS key the secrets are encrypted with (readers need kms:Decrypt on it)."
  value       = module.key.key_arn
}

output "secret_arns" {
  description = "ARNs of the secrets by purpose: jwt, database, redis, kafka."
  value = {
    jwt      = aws_secretsmanager_secret.jwt.arn
    database = aws_secretsmanager_secret.database.arn
    redis    = aws_secretsmanager_secret.redis.arn
    kafka    = aws_secretsmanager_secret.kafka.arn
  }
}

output "kafka_scram_secret_arn" {
  description = "The AmazonMSK_ secret with the shop's SASL/SCRAM user."
  value       = aws_secretsmanager_secret.kafka.arn

  # MSK may only associate the secret once it has a value.
  depends_on = [aws_secretsmanager_secret_version.kafka]
}

output "jwt_secret" {
  description = "SHOP_JWT_SECRET."
  value       = random_password.jwt.result
  sensitive   = true
}

output "database_username" {
  description = "PostgreSQL master user name."
  value       = var.database_username
}

output "database_password" {
  description = "PostgreSQL master password."
  value       = random_password.database.result
  sensitive   = true
}

output "redis_auth_token" {
  description = "ElastiCache AUTH token."
  value       = random_password.redis.result
  sensitive   = true
}

output "kafka_username" {
  description = "SASL/SCRAM user name."
  value       = var.kafka_username
}

output "kafka_password" {
  description = "SASL/SCRAM password."
  value       = random_password.kafka.result
  sensitive   = true
}
