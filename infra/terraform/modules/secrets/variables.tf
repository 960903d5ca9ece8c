variable "name" {
  type        = string
  description = "Prefix of the secret names (e.g. shop-production)."
}

variable "database_username" {
  type        = string
  description = "PostgreSQL master user name stored with its generated password."
}

variable "kafka_username" {
  type        = string
  description = "SASL/SCRAM user name of the shop on MSK, stored with its generated password."
}

variable "recovery_window_in_days" {
  type        = number
  description = "Days a deleted secret can still be restored (7 to 30)."
  default     = 30
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
