# Amazon MSK: brokers in the data subnets, TLS between clients and brokers and among brokers,
# clients authenticated with SASL/SCRAM (secret in Secrets Manager) or IAM (never
# unauthenticated), data encrypted at rest with a customer-managed KMS key, broker logs in
# CloudWatch Logs, and admitted only from the EKS nodes' security group.
locals {
  ports = {
    sasl_scram = 9096
    sasl_iam   = 9098
  }
  # Three copies when there are brokers enough, and an acknowledged write on two of them.
  replication_factor  = min(3, var.broker_count)
  min_insync_replicas = max(1, local.replication_factor - 1)
}

# The key also encrypts the log group of the broker logs.
module "key" {
  source             = "../kms"
  name               = "${var.name}-msk"
  description        = "Data at rest and broker logs of MSK cluster ${var.name}"
  log_groups         = { brokers = "/aws/msk/${var.name}/brokers" }
  log_retention_days = var.log_retention_days
  tags               = var.tags
}

module "security_group" {
  source                   = "../service_security_group"
  name                     = "${var.name}-msk"
  service                  = "Kafka of ${var.name}"
  vpc_id                   = var.vpc_id
  client_security_group_id = var.client_security_group_id
  ports                    = local.ports
  tags                     = var.tags
}

resource "aws_msk_configuration" "this" {
  name           = var.name
  kafka_versions = [var.kafka_version]
  description    = "Broker settings of ${var.name}"

  # Topics are created on purpose (the relay creates its own with SHOP_KAFKA_PARTITIONS), never
  # by a typo in a consumer; no out-of-sync replica becomes leader.
  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    default.replication.factor=${local.replication_factor}
    min.insync.replicas=${local.min_insync_replicas}
    num.partitions=6
    unclean.leader.election.enable=false
    log.retention.hours=168
  PROPERTIES
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.broker_count
  enhanced_monitoring    = "PER_BROKER"

  broker_node_group_info {
    instance_type   = var.broker_instance_type
    client_subnets  = var.subnet_ids
    security_groups = [module.security_group.id]

    storage_info {
      ebs_storage_info {
        volume_size = var.broker_volume_gib
      }
    }

    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = module.key.key_arn

    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  client_authentication {
    unauthenticated = false

    sasl {
      scram = true
      iam   = true
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = module.key.log_group_names["brokers"]
      }
    }
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.broker_count % length(var.subnet_ids) == 0
      error_message = "broker_count must be a multiple of the number of subnets (zones)."
    }
  }
}

resource "aws_msk_scram_secret_association" "this" {
  cluster_arn     = aws_msk_cluster.this.arn
  secret_arn_list = [var.scram_secret_arn]
}
