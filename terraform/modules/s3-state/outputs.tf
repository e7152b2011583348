output "bucket_name" {
  description = "The state bucket."
  value       = aws_s3_bucket.state.bucket
}

output "prefix" {
  description = "Object prefix for the bot's state."
  value       = local.prefix
}

output "state_url" {
  description = "STATE_URL for the bot."
  value       = "s3://${aws_s3_bucket.state.bucket}/${local.prefix}"
}

output "role_arn" {
  description = "The IAM role the bot assumes through IRSA."
  value       = aws_iam_role.bot.arn
}

output "service_account_annotations" {
  description = "Annotations for the bot's Kubernetes ServiceAccount."
  value       = { "eks.amazonaws.com/role-arn" = aws_iam_role.bot.arn }
}

output "settings" {
  description = "Extra settings the bot needs for this bucket (its region, for boto3)."
  value       = { AWS_REGION = data.aws_region.current.name }
}
