output "namespace" {
  description = "Namespace the bot runs in: create the Secrets claude-oauth-tokens and matrix-bot-creds there."
  value       = var.namespace
}

output "token_secret_keys" {
  description = "Keys the token Secret claude-oauth-tokens must hold: accessToken, refreshToken, expiresAt, or <account>.accessToken etc. for each of var.accounts."
  value       = local.token_secret_keys
}

output "service_account" {
  description = "The bot's Kubernetes ServiceAccount (namespace/name), e.g. for a Workload Identity binding."
  value       = "${var.namespace}/claude-matrix-bot"
}

output "state_url" {
  description = "STATE_URL the bot was given."
  value       = local.state_url
}

output "function_url" {
  description = "Cluster-local URL of the Knative Service (null in cronjob mode)."
  value       = local.function_url
}

output "resource_ids" {
  description = "Kustomize ids of every applied resource."
  value = sort(concat(
    keys(kustomization_resource.p0),
    keys(kustomization_resource.p1),
    keys(kustomization_resource.p2),
  ))
}
