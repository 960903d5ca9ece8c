variable "name" {
  type        = string
  description = "Name prefix of every resource (e.g. shop-production)."
}

variable "cidr_block" {
  type        = string
  description = "IPv4 CIDR of the VPC; split into public, private and data subnets per availability zone."

  validation {
    condition     = can(cidrhost(var.cidr_block, 0)) && tonumber(split("/", var.cidr_block)[1]) <= 20
    error_message = "cidr_block must be an IPv4 CIDR of /20 or larger (e.g. 10.40.0.0/16)."
  }
}

variable "availability_zones" {
  type        = list(string)
  description = "Availability zones to spread the subnets (and NAT gateways) over: two or three."

  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 3
    error_message = "Give two or three availability zones."
  }
}

variable "cluster_name" {
  type        = string
  description = "EKS cluster name, for the kubernetes.io/cluster tag load balancers look subnets up by."
}

variable "flow_log_retention_days" {
  type        = number
  description = "Days the VPC flow logs are kept in CloudWatch Logs."
  default     = 365
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
