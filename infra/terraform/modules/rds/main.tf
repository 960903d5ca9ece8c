# PostgreSQL 16 for the event store: Multi-AZ, private (data subnets, admitted only from the EKS
# nodes' security group), encrypted with a customer-managed KMS key, TLS enforced, IAM
# authentication on, automated backups, deletion protection, Performance Insights, enhanced
# monitoring and the server logs in CloudWatch Logs.
locals {
  port = 5432
  # The server logs exported to CloudWatch Logs, each to its own log group.
  log_exports = ["postgresql", "upgrade"]
}

# The key also encrypts the log groups RDS exports the logs to, made here first so that they are
# encrypted and expire.
module "key" {
  source             = "../kms"
  name               = "${var.name}-rds"
  description        = "Storage, Performance Insights and logs of RDS instance ${var.name}"
  log_groups         = { for log in local.log_exports : log => "/aws/rds/instance/${var.name}/${log}" }
  log_retention_days = var.log_retention_days
  tags               = var.tags
}

resource "aws_db_subnet_group" "this" {
  name        = var.name
  description = "Data subnets of ${var.name}"
  subnet_ids  = var.subnet_ids
  tags        = var.tags
}

module "security_group" {
  source                   = "../service_security_group"
  name                     = "${var.name}-rds"
  service                  = "PostgreSQL of ${var.name}"
  vpc_id                   = var.vpc_id
  client_security_group_id = var.client_security_group_id
  ports                    = { postgresql = local.port }
  tags                     = var.tags
}

# What an event store needs besides the defaults. Static parameters apply at the next reboot.
resource "aws_db_parameter_group" "this" {
  name_prefix = "${var.name}-postgres16-"
  family      = "postgres16"
  description = "Event store settings of ${var.name}"

  # Clients must use TLS.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # A transaction left open holds back pg_snapshot_xmin(pg_current_snapshot()), which bounds
  # what the event-log readers (projections, relay, saga, notifier) may read, and vacuum.
  parameter {
    name  = "idle_in_transaction_session_timeout"
    value = tostring(var.idle_in_transaction_timeout_ms)
  }

  # Sized from the pools (see max_connections in envs/production), not from instance memory.
  parameter {
    name         = "max_connections"
    value        = tostring(var.max_connections)
    apply_method = "pending-reboot"
  }

  # Query logging: slow statements and every schema change (migrations).
  parameter {
    name  = "log_min_duration_statement"
    value = tostring(var.log_min_duration_ms)
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  # Appends contend on the stream's version; lock waits beyond deadlock_timeout are worth a line.
  parameter {
    name  = "log_lock_waits"
    value = "1"
  }

  parameter {
    name  = "log_temp_files"
    value = "10240"
  }

  parameter {
    name  = "log_autovacuum_min_duration"
    value = "1000"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_disconnections"
    value = "1"
  }

  # Per-statement statistics (Performance Insights and pg_stat_statements).
  parameter {
    name         = "shared_preload_libraries"
    value        = "pg_stat_statements"
    apply_method = "pending-reboot"
  }

  parameter {
    name  = "pg_stat_statements.track"
    value = "top"
  }

  parameter {
    name  = "track_io_timing"
    value = "1"
  }

  tags = var.tags

  lifecycle {
    create_before_destroy = true
  }
}

# Enhanced monitoring (OS metrics every 15 s).
module "monitoring_role" {
  source               = "../service_role"
  name                 = "${var.name}-rds-monitoring"
  description          = "Enhanced monitoring of RDS instance ${var.name}"
  service              = "monitoring.rds.amazonaws.com"
  aws_managed_policies = ["service-role/AmazonRDSEnhancedMonitoringRole"]
  tags                 = var.tags
}

resource "aws_db_instance" "this" {
  identifier     = var.name
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class

  db_name  = var.database_name
  username = var.master_username
  password = var.master_password
  port     = local.port

  allocated_storage     = var.allocated_storage_gib
  max_allocated_storage = var.max_allocated_storage_gib
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = module.key.key_arn

  multi_az               = true
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [module.security_group.id]
  publicly_accessible    = false
  ca_cert_identifier     = "rds-ca-rsa2048-g1"

  parameter_group_name                = aws_db_parameter_group.this.name
  iam_database_authentication_enabled = true

  backup_retention_period   = var.backup_retention_days
  backup_window             = "02:00-03:00"
  maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = true
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-final"
  delete_automated_backups  = false

  auto_minor_version_upgrade  = true
  allow_major_version_upgrade = false
  apply_immediately           = false

  performance_insights_enabled          = true
  performance_insights_kms_key_id       = module.key.key_arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 15
  monitoring_role_arn                   = module.monitoring_role.arn
  enabled_cloudwatch_logs_exports       = local.log_exports

  tags = var.tags

  # The log groups exist before RDS would make them itself.
  depends_on = [module.key]
}
