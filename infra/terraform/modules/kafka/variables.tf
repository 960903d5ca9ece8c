variable "name" {
  type        = string
  description = "Name of the MSK cluster; prefix of its other resources."
}

variable "vpc_id" {
  type        = string
  description = "VPC the brokers run in."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Client subnets of the brokers (the data tier), one per availability zone."
}

variable "client_security_group_id" {
  type        = string
  description = "Security group of the clients (the EKS nodes): the only source allowed on the SASL ports."
}

variable "kafka_version" {
  type        = string
  description = "Apache Kafka version of the brokers (an MSK version string, e.g. 3.8.x)."
  default     = "3.8.x"
}

variable "broker_instance_type" {
  type        = string
  description = "Broker instance type (e.g. kafka.m7g.large)."
}

variable "broker_count" {
  type        = number
  description = "Brokers in all; a multiple of the number of subnets (MSK spreads them evenly over the zones)."

  validation {
    condition     = var.broker_count >= 2
    error_message = "broker_count must be at least 2."
  }
}

variable "broker_volume_gib" {
  type        = number
  description = "EBS data volume of each broker, GiB."
}

variable "scram_secret_arn" {
  type        = string
  description = "Secrets Manager secret (name AmazonMSK_..., encrypted with a customer-managed key) holding the SASL/SCRAM user of the shop."
}

variable "log_retention_days" {
  type        = number
  description = "Days the broker logs are kept in CloudWatch Logs."
  default     = 365
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
