output "bucket_name" {
  description = "The state bucket."
  value       = google_storage_bucket.state.name
}

output "prefix" {
  description = "Object prefix for the bot's state."
  value       = var.prefix
}

output "state_url" {
  description = "STATE_URL for the bot."
  value       = "gs://${google_storage_bucket.state.name}/${var.prefix}"
}

output "google_service_account_email" {
  description = "The Google service account the bot acts as."
  value       = google_service_account.bot.email
}

output "service_account_annotations" {
  description = "Annotations for the bot's Kubernetes ServiceAccount."
  value       = { "iam.gke.io/gcp-service-account" = google_service_account.bot.email }
}
