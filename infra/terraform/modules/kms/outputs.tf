output "key_arn" {
  description = "ARN of the key."
  value       = aws_kms_key.this.arn
}

output "key_id" {
  description = "Id of the key."
  value       = aws_kms_key.this.key_id
}

output "alias_name" {
  description = "Alias of the key (alias/...)."
  value       = aws_kms_alias.this.name
}

output "log_group_names" {
  description = "Names of the log groups, by the keys of var.log_groups."
  value       = { for key, group in aws_cloudwatch_log_group.this : key => group.name }
}

output "log_group_arns" {
  description = "ARNs of the log groups, by the keys of var.log_groups."
  value       = { for key, group in aws_cloudwatch_log_group.this : key => group.arn }
}
