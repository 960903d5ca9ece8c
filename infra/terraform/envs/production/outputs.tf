# Outputs named in infra/k8s/overlays/aws as ${name} placeholders; infra/scripts/check_terraform.py
# fails when one of those placeholders has no output here.

output "database_url" {
  description = "DATABASE_URL (shop-secrets): the RDS primary over TLS."
  value       = "postgres://${module.secrets.database_username}:${module.secrets.passwords["database"]}@${module.rds.address}:${module.rds.port}/${module.rds.database_name}?sslmode=require"
  sensitive   = true
}

output "redis_url" {
  description = "REDIS_URL (shop-secrets): the ElastiCache primary over TLS with the AUTH token."
  value       = "rediss://:${module.secrets.passwords["redis"]}@${module.redis.primary_endpoint_address}:${module.redis.port}"
  sensitive   = true
}

output "jwt_secret" {
  description = "SHOP_JWT_SECRET (shop-secrets)."
  value       = module.secrets.passwords["jwt"]
  sensitive   = true
}

output "smtp_url" {
  description = "SMTP_URL (shop-secrets), as given in var.smtp_url."
  value       = var.smtp_url
  sensitive   = true
}

output "kafka_brokers" {
  description = "KAFKA_BROKERS (shop-config): the MSK brokers for SASL/SCRAM over TLS."
  value       = module.kafka.bootstrap_brokers_sasl_scram
}

output "kafka_sasl_username" {
  description = "KAFKA_SASL_USERNAME (shop-secrets): the shop's SASL/SCRAM user on MSK (kept in the AmazonMSK_ secret)."
  value       = module.secrets.kafka_username
  sensitive   = true
}

output "kafka_sasl_password" {
  description = "KAFKA_SASL_PASSWORD (shop-secrets): the password of that SASL/SCRAM user."
  value       = module.secrets.passwords["kafka"]
  sensitive   = true
}

output "kafka_replication" {
  description = "SHOP_KAFKA_REPLICATION (shop-config): copies of each partition of the topics the relay creates, min(3, brokers), as the brokers' default.replication.factor."
  value       = module.kafka.replication_factor
}

output "app_role_arn" {
  description = "eks.amazonaws.com/role-arn of the shop service account (IRSA)."
  value       = module.eks.app_role_arn
}

# Not in the overlay: for operators.

output "region" {
  description = "AWS region (aws eks update-kubeconfig --region ...)."
  value       = data.aws_region.current.name
}

output "cluster_name" {
  description = "EKS cluster (aws eks update-kubeconfig --name ...)."
  value       = module.eks.cluster_name
}

output "kubernetes_namespace" {
  description = "Namespace the application role trusts (the overlay's namespace)."
  value       = var.kubernetes_namespace
}

output "service_account_name" {
  description = "Service account the application role trusts (the overlay's ServiceAccount)."
  value       = var.service_account_name
}

output "rds_endpoint" {
  description = "Host name of the PostgreSQL primary."
  value       = module.rds.address
}

output "redis_endpoint" {
  description = "Host name of the Redis primary."
  value       = module.redis.primary_endpoint_address
}

output "nat_public_ips" {
  description = "Addresses outbound traffic leaves from (for allow-lists of webhook receivers and providers)."
  value       = module.network.nat_public_ips
}

output "secret_arns" {
  description = "Secrets Manager secrets of the environment by purpose."
  value       = module.secrets.secret_arns
}

output "kafka_scram_secret_arn" {
  description = "The secret holding the shop's SASL/SCRAM user and password for MSK."
  value       = module.secrets.kafka_scram_secret_arn
}
