# The security group of a service in the data subnets (RDS, ElastiCache, MSK): it admits one
# client security group (the EKS nodes) on the service's TCP ports and nothing else, and the
# client group gets the egress rules to reach it there.
resource "aws_security_group" "this" {
  name        = var.name
  description = "${var.service}: its clients only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = var.name })
}

resource "aws_vpc_security_group_ingress_rule" "from_clients" {
  for_each                     = var.ports
  security_group_id            = aws_security_group.this.id
  description                  = "Port ${each.value} (${each.key}) from the clients"
  referenced_security_group_id = var.client_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
}

resource "aws_vpc_security_group_egress_rule" "clients_to_service" {
  for_each                     = var.ports
  security_group_id            = var.client_security_group_id
  description                  = "${var.service}, port ${each.value} (${each.key})"
  referenced_security_group_id = aws_security_group.this.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
}
