variable "region" {
  description = "AWS region of the bucket and the cluster."
  type        = string
}

variable "bucket_name" {
  description = "Globally unique name of the state bucket."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider."
  type        = string
}

variable "oidc_provider_url" {
  description = "Issuer URL of the cluster's OIDC provider (aws eks describe-cluster --query cluster.identity.oidc.issuer)."
  type        = string
}

variable "kubeconfig_path" {
  description = "kubeconfig of the cluster; null: $KUBECONFIG or ~/.kube/config (aws eks update-kubeconfig writes it)."
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
  description = "cronjob, knative or knative-cronjob-trigger."
  type        = string
  default     = "cronjob"
}
