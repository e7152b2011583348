variable "bucket_name" {
  description = "Globally unique bucket name."
  type        = string
}

variable "prefix" {
  description = "Object prefix for the bot's state; the IAM policy is limited to it."
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

variable "oidc_provider_arn" {
  description = "ARN of the EKS cluster's IAM OIDC provider (IRSA), e.g. module.eks.oidc_provider_arn."
  type        = string
}

variable "oidc_provider_url" {
  description = "Issuer URL of that provider, e.g. https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLE."
  type        = string
}

variable "role_name" {
  description = "Name of the IAM role the bot assumes."
  type        = string
  default     = "claude-matrix-bot"
}

variable "noncurrent_version_days" {
  description = "Days to keep overwritten versions of state objects."
  type        = number
  default     = 30
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete a bucket that still holds state (and the Matrix keys)."
  type        = bool
  default     = false
}
