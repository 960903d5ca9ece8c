variable "name" {
  type        = string
  description = "Name of the EKS cluster; prefix of its other resources."
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes minor version of the control plane and the nodes (e.g. 1.33)."
}

variable "vpc_id" {
  type        = string
  description = "VPC the cluster runs in."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnets for the control-plane network interfaces and the nodes, one per availability zone."
}

variable "endpoint_allowed_cidrs" {
  type        = list(string)
  description = "CIDRs (a VPN or bastion inside or peered with the VPC) allowed to reach the private API endpoint on 443; never 0.0.0.0/0."
  default     = []

  validation {
    condition     = !contains(var.endpoint_allowed_cidrs, "0.0.0.0/0")
    error_message = "The API endpoint is private: 0.0.0.0/0 is not an allowed CIDR."
  }
}

variable "admin_role_arns" {
  type        = list(string)
  description = "IAM roles given cluster-admin through EKS access entries (besides the identity that creates the cluster)."
  default     = []
}

variable "node_instance_types" {
  type        = list(string)
  description = "EC2 instance types of the managed node group."
}

variable "node_min_size" {
  type        = number
  description = "Fewest nodes."
}

variable "node_desired_size" {
  type        = number
  description = "Nodes at creation (the cluster autoscaler changes it afterwards; Terraform ignores drift)."
}

variable "node_max_size" {
  type        = number
  description = "Most nodes."
}

variable "node_disk_size_gib" {
  type        = number
  description = "Size of each node's encrypted gp3 root volume, GiB."
  default     = 50
}

variable "node_egress_tcp_ports" {
  type        = list(number)
  description = "TCP ports the nodes (and so the pods) may reach anywhere on the internet, through the NAT gateways: 443 for ECR, AWS APIs, webhooks and payment/SMS providers, 587 for SMTP submission."
  default     = [443, 587]
}

variable "log_retention_days" {
  type        = number
  description = "Days the control-plane logs are kept in CloudWatch Logs."
  default     = 365
}

variable "app_service_account" {
  type = object({
    namespace = string
    name      = string
  })
  description = "Kubernetes service account of the shop pods, the only one allowed to assume the application's IAM role (IRSA)."
}

variable "app_policy_json" {
  type        = string
  description = "IAM policy document (JSON) of the application's role: what the shop pods may do in AWS."
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
