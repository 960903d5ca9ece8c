# EKS with a private API endpoint only, every control-plane log type in an encrypted log group,
# Kubernetes secrets envelope-encrypted with a customer-managed KMS key, a managed node group in
# the private subnets (IMDSv2 only, encrypted root volumes), an OIDC provider for IAM roles for
# service accounts and the role of the shop pods.
data "aws_partition" "current" {}

locals {
  partition = data.aws_partition.current.partition

  control_plane_to_node_ports = {
    kubelet      = 10250
    webhook-443  = 443
    webhook-4443 = 4443
    webhook-6443 = 6443
    webhook-8443 = 8443
    webhook-9443 = 9443
  }
}

# The key also encrypts the log group of the control-plane logs, made before the cluster so that
# EKS does not make it unencrypted and without retention.
module "key" {
  source             = "../kms"
  name               = "${var.name}-eks"
  description        = "Kubernetes secrets and control-plane logs of EKS cluster ${var.name}"
  log_groups         = { cluster = "/aws/eks/${var.name}/cluster" }
  log_retention_days = var.log_retention_days
  tags               = var.tags
}

# --- IAM: the cluster and the nodes ---------------------------------------------------------

# Envelope encryption of the Kubernetes secrets: the control plane uses the key as this role.
data "aws_iam_policy_document" "cluster_encryption" {
  statement {
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"]
    resources = [module.key.key_arn]
  }
}

module "cluster_role" {
  source               = "../service_role"
  name                 = "${var.name}-cluster"
  description          = "Control plane of EKS cluster ${var.name}"
  service              = "eks.amazonaws.com"
  assume_actions       = ["sts:AssumeRole", "sts:TagSession"]
  aws_managed_policies = ["AmazonEKSClusterPolicy", "AmazonEKSVPCResourceController"]
  policies             = { secrets-encryption = data.aws_iam_policy_document.cluster_encryption.json }
  tags                 = var.tags
}

# AmazonSSMManagedInstanceCore: shell access through Session Manager instead of SSH keys.
module "node_role" {
  source      = "../service_role"
  name        = "${var.name}-node"
  description = "Nodes of EKS cluster ${var.name}"
  service     = "ec2.amazonaws.com"
  aws_managed_policies = [
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonSSMManagedInstanceCore",
  ]
  tags = var.tags
}

# --- Security groups --------------------------------------------------------------------------
# cluster: the control plane's network interfaces (besides the security group EKS makes itself).
# node:    every node, and so every pod (the VPC CNI gives pods the node's security groups);
#          RDS, ElastiCache and MSK admit this group only (see their modules).

resource "aws_security_group" "cluster" {
  name        = "${var.name}-cluster"
  description = "EKS control plane of ${var.name}: the API from the nodes and the admin CIDRs"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-cluster" })
}

resource "aws_security_group" "node" {
  name        = "${var.name}-node"
  description = "EKS nodes and pods of ${var.name}"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = "${var.name}-node" })
}

resource "aws_vpc_security_group_ingress_rule" "cluster_from_nodes" {
  security_group_id            = aws_security_group.cluster.id
  description                  = "Kubernetes API from the nodes"
  referenced_security_group_id = aws_security_group.node.id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "aws_vpc_security_group_ingress_rule" "cluster_from_admins" {
  for_each          = toset(var.endpoint_allowed_cidrs)
  security_group_id = aws_security_group.cluster.id
  description       = "Kubernetes API from an admin network"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# The control plane calls the kubelets (10250: logs, exec, metrics) and admission webhooks
# (the usual webhook ports).
resource "aws_vpc_security_group_egress_rule" "cluster_to_nodes" {
  for_each                     = local.control_plane_to_node_ports
  security_group_id            = aws_security_group.cluster.id
  description                  = "Control plane to the nodes: ${each.key}"
  referenced_security_group_id = aws_security_group.node.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
}

resource "aws_vpc_security_group_ingress_rule" "node_from_cluster" {
  for_each                     = local.control_plane_to_node_ports
  security_group_id            = aws_security_group.node.id
  description                  = "Control plane to the nodes: ${each.key}"
  referenced_security_group_id = aws_security_group.cluster.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
}

resource "aws_vpc_security_group_ingress_rule" "node_from_nodes" {
  security_group_id            = aws_security_group.node.id
  description                  = "Pod-to-pod and node-to-node traffic (CoreDNS, services)"
  referenced_security_group_id = aws_security_group.node.id
  ip_protocol                  = "-1"
}

resource "aws_vpc_security_group_egress_rule" "node_to_nodes" {
  security_group_id            = aws_security_group.node.id
  description                  = "Pod-to-pod and node-to-node traffic (CoreDNS, services)"
  referenced_security_group_id = aws_security_group.node.id
  ip_protocol                  = "-1"
}

resource "aws_vpc_security_group_egress_rule" "node_to_cluster" {
  security_group_id            = aws_security_group.node.id
  description                  = "Kubernetes API"
  referenced_security_group_id = aws_security_group.cluster.id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
}

resource "aws_vpc_security_group_egress_rule" "node_to_internet" {
  for_each          = toset([for p in var.node_egress_tcp_ports : tostring(p)])
  security_group_id = aws_security_group.node.id
  description       = "Outbound TCP ${each.value} through the NAT gateways"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.value)
  to_port           = tonumber(each.value)
}

# --- The cluster ------------------------------------------------------------------------------

resource "aws_eks_cluster" "this" {
  name                      = var.name
  version                   = var.kubernetes_version
  role_arn                  = module.cluster_role.arn
  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  vpc_config {
    subnet_ids              = var.subnet_ids
    security_group_ids      = [aws_security_group.cluster.id]
    endpoint_private_access = true
    endpoint_public_access  = false
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = module.key.key_arn
    }
  }

  access_config {
    authentication_mode                         = "API"
    bootstrap_cluster_creator_admin_permissions = true
  }

  tags = var.tags

  # The log group first (module.key); the role's policies come with module.cluster_role.arn.
  depends_on = [module.key]
}

resource "aws_eks_access_entry" "admin" {
  for_each      = toset(var.admin_role_arns)
  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.value
  type          = "STANDARD"
  tags          = var.tags
}

resource "aws_eks_access_policy_association" "admin" {
  for_each      = toset(var.admin_role_arns)
  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.value
  policy_arn    = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"

  access_scope {
    type = "cluster"
  }

  depends_on = [aws_eks_access_entry.admin]
}

# --- Nodes ------------------------------------------------------------------------------------

resource "aws_launch_template" "node" {
  name_prefix            = "${var.name}-node-"
  description            = "Nodes of ${var.name}: IMDSv2 only, encrypted root volume, the node security group"
  update_default_version = true
  vpc_security_group_ids = [aws_security_group.node.id]

  # IMDSv2 only, and one hop: pods (which use IRSA) cannot reach the node's credentials.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = var.node_disk_size_gib
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = "${var.name}-node" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(var.tags, { Name = "${var.name}-node" })
  }

  tags = var.tags
}

resource "aws_eks_node_group" "default" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "${var.name}-default"
  node_role_arn   = module.node_role.arn
  subnet_ids      = var.subnet_ids
  ami_type        = "AL2023_x86_64_STANDARD"
  capacity_type   = "ON_DEMAND"
  instance_types  = var.node_instance_types

  scaling_config {
    min_size     = var.node_min_size
    desired_size = var.node_desired_size
    max_size     = var.node_max_size
  }

  update_config {
    max_unavailable = 1
  }

  launch_template {
    id      = aws_launch_template.node.id
    version = aws_launch_template.node.latest_version
  }

  tags = var.tags

  lifecycle {
    ignore_changes = [scaling_config[0].desired_size]
  }
}

# --- IAM roles for service accounts -----------------------------------------------------------

data "tls_certificate" "oidc" {
  url = aws_eks_cluster.this.identity[0].oidc[0].issuer
}

resource "aws_iam_openid_connect_provider" "this" {
  url             = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = [data.tls_certificate.oidc.certificates[0].sha1_fingerprint]
  tags            = var.tags
}

locals {
  oidc_issuer_host = replace(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://", "")
}

data "aws_iam_policy_document" "app_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.this.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer_host}:sub"
      values   = ["system:serviceaccount:${var.app_service_account.namespace}:${var.app_service_account.name}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "app" {
  name               = "${var.name}-app"
  description        = "The shop pods (service account ${var.app_service_account.namespace}/${var.app_service_account.name}) through IRSA"
  assume_role_policy = data.aws_iam_policy_document.app_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "app" {
  name   = "shop-app"
  role   = aws_iam_role.app.id
  policy = var.app_policy_json
}
