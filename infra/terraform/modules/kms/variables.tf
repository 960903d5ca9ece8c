variable "name" {
  type        = string
  description = "Alias of the key, without the alias/ prefix (e.g. shop-production-rds)."
}

variable "description" {
  type        = string
  description = "What the key encrypts; shown in the KMS console."
}

variable "log_groups" {
  type        = map(string)
  description = "CloudWatch Logs log groups to make, encrypted with this key: log group name by a key of the caller's choosing (e.g. a log type). Empty: no log group, and CloudWatch Logs may not use the key."
  default     = {}
}

variable "log_retention_days" {
  type        = number
  description = "Days the log groups keep their events."
  default     = 365
}

variable "deletion_window_in_days" {
  type        = number
  description = "Days a deleted key stays recoverable (7 to 30)."
  default     = 30

  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "deletion_window_in_days must be between 7 and 30."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the key and the log groups."
  default     = {}
}
