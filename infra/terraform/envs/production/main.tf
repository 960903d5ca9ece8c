# The shop in production on AWS: network, EKS, PostgreSQL (RDS), Redis (ElastiCache), Kafka
# (MSK) and the secrets. The outputs fill the placeholders of infra/k8s/overlays/aws (README).

# The zones by name, so that the set never grows by itself when AWS adds a zone to the region.
data "aws_availability_zones" "selected" {
  state = "available"

  filter {
    name   = "zone-name"
    values = var.availability_zones
  }

  lifecycle {
    postcondition {
      condition     = length(self.names) == length(var.availability_zones)
      error_message = "Some of var.availability_zones are not available zones of var.region."
    }
  }
}

data "aws_region" "current" {}

module "network" {
  source             = "../../modules/network"
  name               = var.name
  cidr_block         = var.vpc_cidr
  availability_zones = data.aws_availability_zones.selected.names
  cluster_name       = var.name
}

module "secrets" {
  source            = "../../modules/secrets"
  name              = var.name
  database_username = var.db_username
  kafka_username    = var.kafka_username
}

# What the shop pods may do in AWS (IRSA): read their own secrets, nothing else.
data "aws_iam_policy_document" "app" {
  statement {
    sid       = "ReadOwnSecrets"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = values(module.secrets.secret_arns)
  }

  statement {
    sid       = "DecryptOwnSecrets"
    actions   = ["kms:Decrypt"]
    resources = [module.secrets.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${data.aws_region.current.name}.amazonaws.com"]
    }
  }
}

module "eks" {
  source                 = "../../modules/eks"
  name                   = var.name
  kubernetes_version     = var.kubernetes_version
  vpc_id                 = module.network.vpc_id
  subnet_ids             = module.network.private_subnet_ids
  endpoint_allowed_cidrs = var.eks_endpoint_allowed_cidrs
  admin_role_arns        = var.eks_admin_role_arns
  node_instance_types    = var.node_instance_types
  node_min_size          = var.node_min_size
  node_desired_size      = var.node_desired_size
  node_max_size          = var.node_max_size
  app_service_account = {
    namespace = var.kubernetes_namespace
    name      = var.service_account_name
  }
  app_policy_json = data.aws_iam_policy_document.app.json
}

module "rds" {
  source                    = "../../modules/rds"
  name                      = var.name
  vpc_id                    = module.network.vpc_id
  subnet_ids                = module.network.data_subnet_ids
  client_security_group_id  = module.eks.node_security_group_id
  instance_class            = var.db_instance_class
  allocated_storage_gib     = var.db_allocated_storage_gib
  max_allocated_storage_gib = var.db_max_allocated_storage_gib
  database_name             = var.db_name
  master_username           = module.secrets.database_username
  master_password           = module.secrets.passwords["database"]
  max_connections           = var.db_max_connections
}

module "redis" {
  source                   = "../../modules/redis"
  name                     = var.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.data_subnet_ids
  client_security_group_id = module.eks.node_security_group_id
  node_type                = var.redis_node_type
  auth_token               = module.secrets.passwords["redis"]
}

module "kafka" {
  source                   = "../../modules/kafka"
  name                     = var.name
  vpc_id                   = module.network.vpc_id
  subnet_ids               = module.network.data_subnet_ids
  client_security_group_id = module.eks.node_security_group_id
  broker_instance_type     = var.kafka_broker_instance_type
  broker_count             = var.kafka_broker_count
  broker_volume_gib        = var.kafka_broker_volume_gib
  scram_secret_arn         = module.secrets.kafka_scram_secret_arn
}
