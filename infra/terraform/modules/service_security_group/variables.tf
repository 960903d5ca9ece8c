variable "name" {
  type        = string
  description = "Name of the security group (and its Name tag)."
}

variable "service" {
  type        = string
  description = "What listens on the ports, for the descriptions of the group and its rules (e.g. PostgreSQL of shop-production)."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the security group."
}

variable "client_security_group_id" {
  type        = string
  description = "Security group of the clients (the EKS nodes): the only source admitted, and the group given the egress rules to the service."
}

variable "ports" {
  type        = map(number)
  description = "TCP ports of the service by listener (e.g. { sasl_scram = 9096 })."
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the security group."
  default     = {}
}
