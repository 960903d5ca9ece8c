output "vpc_id" {
  description = "Id of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "IPv4 CIDR of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Public subnets, one per availability zone (NAT gateways, internet-facing load balancers)."
  value       = [for az in var.availability_zones : aws_subnet.public[az].id]
}

output "private_subnet_ids" {
  description = "Private subnets with a NAT route, one per availability zone (EKS nodes and pods)."
  value       = [for az in var.availability_zones : aws_subnet.private[az].id]
}

output "data_subnet_ids" {
  description = "Subnets without any route out of the VPC, one per availability zone (RDS, ElastiCache, MSK)."
  value       = [for az in var.availability_zones : aws_subnet.data[az].id]
}

output "nat_public_ips" {
  description = "Public addresses the nodes' outbound traffic leaves from (for allow-lists of webhook receivers, payment and SMS providers)."
  value       = [for az in var.availability_zones : aws_eip.nat[az].public_ip]
}
