variable "name" {
  type        = string
  description = "Alias of the key, without the alias/ prefix (e.g. shop-production-rds)."
}

variable "description" {
  type        = string
  description = "What the key encrypts; shown in the KMS console."
}

variable "cloudwatch_logs_region" {
  type        = string
  description = "Region whose CloudWatch Logs service may use the key for the account's log groups; null when no log group uses it."
  default     = null
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
  description = "Tags added to the key."
  default     = {}
}
