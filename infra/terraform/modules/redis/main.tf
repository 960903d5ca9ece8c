# ElastiCache for Redis OSS: a primary and replicas over the zones with automatic failover,
# TLS in transit with an AUTH token, encryption at rest with a customer-managed KMS key, the slow
# log and engine log in CloudWatch Logs, and admitted only from the EKS nodes' security group.
locals {
  port = 6379
}

# The key also encrypts the log groups of the slow log and the engine log.
module "key" {
  source             = "../kms"
  name               = "${var.name}-redis"
  description        = "Data at rest and logs of ElastiCache replication group ${var.name}"
  log_groups         = { for log in ["slow-log", "engine-log"] : log => "/aws/elasticache/${var.name}/${log}" }
  log_retention_days = var.log_retention_days
  tags               = var.tags
}

resource "aws_elasticache_subnet_group" "this" {
  name        = var.name
  description = "Data subnets of ${var.name}"
  subnet_ids  = var.subnet_ids
  tags        = var.tags
}

module "security_group" {
  source                   = "../service_security_group"
  name                     = "${var.name}-redis"
  service                  = "Redis of ${var.name}"
  vpc_id                   = var.vpc_id
  client_security_group_id = var.client_security_group_id
  ports                    = { redis = local.port }
  tags                     = var.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = var.name
  description          = "Product documents and other caches of ${var.name}"
  engine               = "redis"
  engine_version       = var.engine_version
  node_type            = var.node_type
  port                 = local.port
  num_cache_clusters   = 1 + var.replicas

  multi_az_enabled           = true
  automatic_failover_enabled = true

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [module.security_group.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = module.key.key_arn
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = var.auth_token
  auth_token_update_strategy = "ROTATE"

  snapshot_retention_limit   = var.snapshot_retention_days
  snapshot_window            = "01:00-02:00"
  maintenance_window         = "sun:04:30-sun:05:30"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  dynamic "log_delivery_configuration" {
    for_each = module.key.log_group_names
    content {
      destination      = log_delivery_configuration.value
      destination_type = "cloudwatch-logs"
      log_format       = "json"
      log_type         = log_delivery_configuration.key
    }
  }

  tags = var.tags
}
