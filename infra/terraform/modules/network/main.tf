# A VPC over the given availability zones with three subnet tiers per zone:
#   public  - NAT gateways and internet-facing load balancers (no public IPs on launch);
#   private - the EKS nodes; out to the internet through the NAT gateway of their zone;
#   data    - RDS, ElastiCache and MSK; no route out of the VPC at all.
# Every flow is logged to CloudWatch Logs (KMS-encrypted) and the default security group denies all.
data "aws_region" "current" {}
data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  zones = { for i, az in var.availability_zones : az => i }
  # The VPC in quarters: one per zone (up to three) for the private subnets, which need the most
  # addresses (the VPC CNI gives every pod one); the last quarter in eighths for the public
  # (0-2) and the data (4-6) subnets. A /16 gives /18 private and /21 public and data subnets.
  last_quarter  = cidrsubnet(var.cidr_block, 2, 3)
  private_cidrs = { for az, i in local.zones : az => cidrsubnet(var.cidr_block, 2, i) }
  public_cidrs  = { for az, i in local.zones : az => cidrsubnet(local.last_quarter, 3, i) }
  data_cidrs    = { for az, i in local.zones : az => cidrsubnet(local.last_quarter, 3, 4 + i) }
}

resource "aws_vpc" "this" {
  cidr_block           = var.cidr_block
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(var.tags, { Name = var.name })
}

# Nothing may use the default security group: no rules at all.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-default-deny" })
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = var.name })
}

resource "aws_subnet" "public" {
  for_each                = local.public_cidrs
  vpc_id                  = aws_vpc.this.id
  availability_zone       = each.key
  cidr_block              = each.value
  map_public_ip_on_launch = false
  tags = merge(var.tags, {
    Name                                        = "${var.name}-public-${each.key}"
    "kubernetes.io/role/elb"                    = "1"
    "kubernetes.io/cluster/${var.cluster_name}" = "shared"
  })
}

resource "aws_subnet" "private" {
  for_each          = local.private_cidrs
  vpc_id            = aws_vpc.this.id
  availability_zone = each.key
  cidr_block        = each.value
  tags = merge(var.tags, {
    Name                                        = "${var.name}-private-${each.key}"
    "kubernetes.io/role/internal-elb"           = "1"
    "kubernetes.io/cluster/${var.cluster_name}" = "shared"
  })
}

resource "aws_subnet" "data" {
  for_each          = local.data_cidrs
  vpc_id            = aws_vpc.this.id
  availability_zone = each.key
  cidr_block        = each.value
  tags              = merge(var.tags, { Name = "${var.name}-data-${each.key}" })
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-public" })
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  for_each       = aws_subnet.public
  subnet_id      = each.value.id
  route_table_id = aws_route_table.public.id
}

# One NAT gateway per zone, so losing a zone does not cut the other zone's nodes off.
resource "aws_eip" "nat" {
  for_each = local.zones
  domain   = "vpc"
  tags     = merge(var.tags, { Name = "${var.name}-nat-${each.key}" })

  depends_on = [aws_internet_gateway.this]
}

resource "aws_nat_gateway" "this" {
  for_each      = local.zones
  allocation_id = aws_eip.nat[each.key].id
  subnet_id     = aws_subnet.public[each.key].id
  tags          = merge(var.tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_route_table" "private" {
  for_each = local.zones
  vpc_id   = aws_vpc.this.id
  tags     = merge(var.tags, { Name = "${var.name}-private-${each.key}" })
}

resource "aws_route" "private_nat" {
  for_each               = local.zones
  route_table_id         = aws_route_table.private[each.key].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[each.key].id
}

resource "aws_route_table_association" "private" {
  for_each       = aws_subnet.private
  subnet_id      = each.value.id
  route_table_id = aws_route_table.private[each.key].id
}

# The data tier only talks inside the VPC: a route table with the local route only.
resource "aws_route_table" "data" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = "${var.name}-data" })
}

resource "aws_route_table_association" "data" {
  for_each       = aws_subnet.data
  subnet_id      = each.value.id
  route_table_id = aws_route_table.data.id
}

# Image layers (ECR keeps them in S3) and other S3 traffic stay off the NAT gateways.
resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${data.aws_region.current.name}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [for rt in aws_route_table.private : rt.id]
  tags              = merge(var.tags, { Name = "${var.name}-s3" })
}

# Flow logs: every accepted and rejected flow, to an encrypted log group.
module "flow_logs_key" {
  source             = "../kms"
  name               = "${var.name}-flow-logs"
  description        = "VPC flow logs of ${var.name}"
  log_groups         = { flow_logs = "/aws/vpc/${var.name}/flow-logs" }
  log_retention_days = var.flow_log_retention_days
  tags               = var.tags
}

locals {
  flow_log_group_arn = module.flow_logs_key.log_group_arns["flow_logs"]
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${local.flow_log_group_arn}:*"]
  }

  statement {
    actions   = ["logs:DescribeLogGroups"]
    resources = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:*"]
  }
}

module "flow_logs_role" {
  source                 = "../service_role"
  name                   = "${var.name}-flow-logs"
  description            = "VPC flow logs of ${var.name}"
  service                = "vpc-flow-logs.amazonaws.com"
  require_source_account = true
  policies               = { write-flow-logs = data.aws_iam_policy_document.flow_logs.json }
  tags                   = var.tags
}

resource "aws_flow_log" "this" {
  vpc_id                   = aws_vpc.this.id
  traffic_type             = "ALL"
  log_destination_type     = "cloud-watch-logs"
  log_destination          = local.flow_log_group_arn
  iam_role_arn             = module.flow_logs_role.arn
  max_aggregation_interval = 60
  tags                     = var.tags
}
