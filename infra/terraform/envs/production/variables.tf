variable "region" {
  type        = string
  description = "AWS region of the whole environment."
  default     = "eu-central-1"
}

variable "availability_zones" {
  type        = list(string)
  description = "The two availability zones of var.region the environment spans."
  default     = ["eu-central-1a", "eu-central-1b"]

  validation {
    condition     = length(var.availability_zones) == 2
    error_message = "The environment spans exactly two availability zones."
  }
}

variable "name" {
  type        = string
  description = "Name of the environment: the EKS cluster's name and every resource's prefix."
  default     = "shop-production"
}

variable "vpc_cidr" {
  type        = string
  description = "IPv4 CIDR of the VPC."
  default     = "10.40.0.0/16"
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes minor version of EKS."
  default     = "1.33"
}

variable "eks_admin_role_arns" {
  type        = list(string)
  description = "IAM roles given cluster-admin on EKS (e.g. the operators' SSO role, the CI deploy role)."
  default     = []
}

variable "eks_endpoint_allowed_cidrs" {
  type        = list(string)
  description = "Networks (VPN, bastion) allowed to reach the private Kubernetes API endpoint."
  default     = []
}

variable "node_instance_types" {
  type        = list(string)
  description = "Instance types of the EKS node group."
  default     = ["m7i.large"]
}

variable "node_min_size" {
  type        = number
  description = "Fewest EKS nodes."
  default     = 3
}

variable "node_desired_size" {
  type        = number
  description = "EKS nodes at creation."
  default     = 3
}

variable "node_max_size" {
  type        = number
  description = "Most EKS nodes."
  default     = 8
}

variable "db_instance_class" {
  type        = string
  description = "RDS instance class of PostgreSQL."
  default     = "db.r7g.large"
}

variable "db_allocated_storage_gib" {
  type        = number
  description = "Initial PostgreSQL storage, GiB."
  default     = 100
}

variable "db_max_allocated_storage_gib" {
  type        = number
  description = "Upper bound of PostgreSQL storage autoscaling, GiB."
  default     = 1000
}

variable "db_name" {
  type        = string
  description = "Name of the shop's PostgreSQL database."
  default     = "shop"
}

variable "db_username" {
  type        = string
  description = "PostgreSQL master user name (its password is generated into Secrets Manager)."
  default     = "shop"
}

# infra/k8s at full scale: command-api and query-api up to 10 pods each (their HPAs), one
# projections, relay, saga and notifier pod and the migrate job: 25 processes x
# SHOP_DB_POOL_SIZE 16 = 400, plus a rolling update's surge pods, psql sessions and RDS's own
# reserved connections.
variable "db_max_connections" {
  type        = number
  description = "PostgreSQL max_connections; keep above (pods at full scale x SHOP_DB_POOL_SIZE) with room for a rollout."
  default     = 600
}

variable "redis_node_type" {
  type        = string
  description = "ElastiCache node type."
  default     = "cache.r7g.large"
}

variable "kafka_broker_instance_type" {
  type        = string
  description = "MSK broker instance type."
  default     = "kafka.m7g.large"
}

variable "kafka_broker_count" {
  type        = number
  description = "MSK brokers, a multiple of the two availability zones."
  default     = 2
}

variable "kafka_broker_volume_gib" {
  type        = number
  description = "EBS volume of each MSK broker, GiB."
  default     = 200
}

variable "kafka_username" {
  type        = string
  description = "SASL/SCRAM user name of the shop on MSK."
  default     = "shop"
}

variable "kubernetes_namespace" {
  type        = string
  description = "Namespace the shop runs in (infra/k8s/overlays/aws sets the same)."
  default     = "shop"
}

variable "service_account_name" {
  type        = string
  description = "Service account of the shop pods that assumes the application role (infra/k8s/overlays/aws creates it)."
  default     = "shop"
}

variable "smtp_url" {
  type        = string
  description = "SMTP_URL of the shop: smtp://user:password@host:587?tls=required (STARTTLS) or smtps://user:password@host:465 (TLS) of the mail relay; given at apply time, never committed."
  sensitive   = true
}
