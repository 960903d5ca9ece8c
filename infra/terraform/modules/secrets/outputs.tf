output "kms_key_arn" {
  description = "KMS key the secrets are encrypted with (readers need kms:Decrypt on it)."
  value       = module.key.key_arn
}

output "secret_arns" {
  description = "ARNs of the secrets by purpose: jwt, database, redis, kafka."
  value       = { for purpose, secret in aws_secretsmanager_secret.this : purpose => secret.arn }
}

output "kafka_scram_secret_arn" {
  description = "The AmazonMSK_ secret with the shop's SASL/SCRAM user."
  value       = aws_secretsmanager_secret.this["kafka"].arn

  # MSK may only associate the secret once it has a value.
  depends_on = [aws_secretsmanager_secret_version.this]
}

output "passwords" {
  description = "The generated values by purpose: jwt (SHOP_JWT_SECRET), database (PostgreSQL master password), redis (ElastiCache AUTH token), kafka (SASL/SCRAM password)."
  value       = { for purpose, password in random_password.this : purpose => password.result }
  sensitive   = true
}

output "database_username" {
  description = "PostgreSQL master user name."
  value       = var.database_username
}

output "kafka_username" {
  description = "SASL/SCRAM user name."
  value       = var.kafka_username
}
