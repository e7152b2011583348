output "state_url" {
  description = "Where the bot keeps its state."
  value       = module.bot.state_url
}

output "role_arn" {
  description = "The IAM role the bot assumes."
  value       = module.s3_state.role_arn
}

output "namespace" {
  description = "Create the Secrets here (docs/deploy.md)."
  value       = module.bot.namespace
}
