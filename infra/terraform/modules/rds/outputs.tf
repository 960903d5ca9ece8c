output "address" {
  description = "Host name of the database (resolves to the current primary after a Multi-AZ failover)."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "PostgreSQL port."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Name of the shop's database."
  value       = aws_db_instance.this.db_name
}

output "security_group_id" {
  description = "Security group of the database."
  value       = module.security_group.id
}

output "instance_resource_id" {
  description = "Resource id of the instance (for rds-db:connect IAM policies)."
  value       = aws_db_instance.this.resource_id
}
