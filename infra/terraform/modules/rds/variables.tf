variable "name" {
  type        = string
  description = "Identifier of the DB instance; prefix of its other resources."
}

variable "vpc_id" {
  type        = string
  description = "VPC the database runs in."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Subnets of the DB subnet group (the data tier, no route out of the VPC), in at least two availability zones."
}

variable "client_security_group_id" {
  type        = string
  description = "Security group of the clients (the EKS nodes): the only source allowed on the PostgreSQL port."
}

variable "instance_class" {
  type        = string
  description = "DB instance class (e.g. db.r7g.large)."
}

variable "allocated_storage_gib" {
  type        = number
  description = "Initial gp3 storage, GiB."
}

variable "max_allocated_storage_gib" {
  type        = number
  description = "Upper bound of storage autoscaling, GiB."
}

variable "engine_version" {
  type        = string
  description = "PostgreSQL version: a major version (16, minor upgrades then automatic) or a full one (16.4)."
  default     = "16"

  validation {
    condition     = split(".", var.engine_version)[0] == "16"
    error_message = "The parameter group is for PostgreSQL 16 (family postgres16)."
  }
}

variable "database_name" {
  type        = string
  description = "Database created with the instance (the shop's, in DATABASE_URL)."
}

variable "master_username" {
  type        = string
  description = "Master user name (the credentials are in Secrets Manager)."
}

variable "master_password" {
  type        = string
  description = "Master user password, from the secrets module; never a literal."
  sensitive   = true
}

variable "max_connections" {
  type        = number
  description = "PostgreSQL max_connections: the pods' pools (SHOP_DB_POOL_SIZE x processes at full scale) plus room for a rolling update, migrations and administration."
}

variable "log_min_duration_ms" {
  type        = number
  description = "Statements running at least this long are logged (log_min_duration_statement, ms)."
  default     = 500
}

variable "idle_in_transaction_timeout_ms" {
  type        = number
  description = "Sessions idle inside an open transaction are ended after this long (idle_in_transaction_session_timeout, ms): an open transaction holds back pg_snapshot_xmin, and so every event-log reader, and vacuum."
  default     = 60000
}

variable "backup_retention_days" {
  type        = number
  description = "Days automated backups (point-in-time recovery) are kept."
  default     = 14
}

variable "log_retention_days" {
  type        = number
  description = "Days the exported PostgreSQL logs are kept in CloudWatch Logs."
  default     = 365
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
