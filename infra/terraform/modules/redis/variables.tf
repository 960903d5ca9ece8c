variable "name" {
  type        = string
  description = "Id of the replication group; prefix of its other resources."
}

variable "vpc_id" {
  type        = string
  description = "VPC the cache runs in."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Subnets of the cache subnet group (the data tier), in at least two availability zones."
}

variable "client_security_group_id" {
  type        = string
  description = "Security group of the clients (the EKS nodes): the only source allowed on the Redis port."
}

variable "node_type" {
  type        = string
  description = "Cache node type (e.g. cache.r7g.large)."
}

variable "replicas" {
  type        = number
  description = "Read replicas besides the primary (at least 1: automatic failover to another zone needs one)."
  default     = 1

  validation {
    condition     = var.replicas >= 1 && var.replicas <= 5
    error_message = "replicas must be between 1 and 5."
  }
}

variable "engine_version" {
  type        = string
  description = "Redis OSS engine version."
  default     = "7.1"
}

variable "auth_token" {
  type        = string
  description = "AUTH token clients present (from the secrets module; 16 to 128 characters, no @, \" or /); never a literal."
  sensitive   = true
}

variable "snapshot_retention_days" {
  type        = number
  description = "Days daily snapshots are kept (the cache can be rebuilt by the projections, the snapshot only shortens the warm-up)."
  default     = 7
}

variable "log_retention_days" {
  type        = number
  description = "Days the slow log and engine log are kept in CloudWatch Logs."
  default     = 365
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
