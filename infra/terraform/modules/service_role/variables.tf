variable "name" {
  type        = string
  description = "Name of the role."
}

variable "description" {
  type        = string
  description = "What the role is for; shown in the IAM console."
}

variable "service" {
  type        = string
  description = "Service principal that assumes the role (e.g. eks.amazonaws.com)."
}

variable "assume_actions" {
  type        = list(string)
  description = "Actions the service may take on the role (EKS also wants sts:TagSession)."
  default     = ["sts:AssumeRole"]
}

variable "require_source_account" {
  type        = bool
  description = "Let the service assume the role only on behalf of this account (an aws:SourceAccount condition); only for services that set that key."
  default     = false
}

variable "aws_managed_policies" {
  type        = list(string)
  description = "AWS-managed policies to attach, by their path and name after policy/ (e.g. AmazonEKSClusterPolicy, service-role/AmazonRDSEnhancedMonitoringRole)."
  default     = []
}

variable "policies" {
  type        = map(string)
  description = "Inline policies of the role: policy document (JSON) by policy name."
  default     = {}
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the role."
  default     = {}
}
