variable "project_id" {
  description = "Google Cloud project of the bucket, the service account and the GKE cluster (Workload Identity pool PROJECT.svc.id.goog)."
  type        = string
}

variable "location" {
  description = "Bucket location, e.g. europe-west1 or EU."
  type        = string
}

variable "bucket_name" {
  description = "Globally unique bucket name."
  type        = string
}

variable "prefix" {
  description = "Object prefix for the bot's state."
  type        = string
  default     = "claude-matrix-bot"
}

variable "namespace" {
  description = "Kubernetes namespace of the bot's ServiceAccount."
  type        = string
  default     = "claude-matrix-bot"
}

variable "kubernetes_service_account" {
  description = "Name of the bot's Kubernetes ServiceAccount (deploy/base)."
  type        = string
  default     = "claude-matrix-bot"
}

variable "google_service_account_id" {
  description = "account_id of the Google service account the bot acts as."
  type        = string
  default     = "claude-matrix-bot"
}

variable "noncurrent_version_days" {
  description = "Days to keep overwritten versions of state objects (versioning is the undo for a bad write)."
  type        = number
  default     = 30
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete a bucket that still holds state (and the Matrix keys)."
  type        = bool
  default     = false
}
