output "cluster_arn" {
  description = "ARN of the MSK cluster."
  value       = aws_msk_cluster.this.arn
}

output "bootstrap_brokers_sasl_scram" {
  description = "host:port,... of the brokers for SASL/SCRAM over TLS (port 9096)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_scram
}

output "bootstrap_brokers_sasl_iam" {
  description = "host:port,... of the brokers for IAM authentication over TLS (port 9098)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
}

output "security_group_id" {
  description = "Security group of the brokers."
  value       = module.security_group.id
}

output "replication_factor" {
  description = "Copies of each partition the brokers default to, min(3, broker_count): SHOP_KAFKA_REPLICATION of the shop's relay."
  value       = local.replication_factor
}
