variable "project_id" {
  description = "Google Cloud project of the GKE cluster and the bucket."
  type        = string
}

variable "region" {
  description = "Region of the bucket (and the provider default)."
  type        = string
}

variable "bucket_name" {
  description = "Globally unique name of the state bucket."
  type        = string
}

variable "kubeconfig_path" {
  description = "kubeconfig of the cluster; null: $KUBECONFIG or ~/.kube/config (gcloud container clusters get-credentials writes it)."
  type        = string
  default     = null
}

variable "kube_context" {
  description = "kubeconfig context; null: the current one."
  type        = string
  default     = null
}

variable "namespace" {
  description = "Namespace of the bot."
  type        = string
  default     = "claude-matrix-bot"
}

variable "image" {
  description = "Image REPOSITORY:TAG; null: the one in deploy/components/common."
  type        = string
  default     = null
}

variable "matrix_room_id" {
  description = "Alert room id."
  type        = string
}

variable "schedule" {
  description = "Trigger schedule."
  type        = string
  default     = "*/5 * * * *"
}

variable "trigger_mode" {
  description = "knative, cronjob or knative-cronjob-trigger."
  type        = string
  default     = "knative"
}
