output "name" {
  description = "Name of the role."
  value       = aws_iam_role.this.name
}

output "arn" {
  description = "ARN of the role, once its policies are attached: whatever uses it waits for them (and is destroyed before them)."
  value       = aws_iam_role.this.arn

  depends_on = [aws_iam_role_policy_attachment.this, aws_iam_role_policy.this]
}
