output "state_url" {
  description = "Where the bot keeps its state."
  value       = module.bot.state_url
}

output "google_service_account_email" {
  description = "The Google service account the bot acts as."
  value       = module.gcs_state.google_service_account_email
}

output "namespace" {
  description = "Create the Secrets here (docs/deploy.md)."
  value       = module.bot.namespace
}
