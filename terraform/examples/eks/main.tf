# EKS with IAM Roles for Service Accounts: the bot as a CronJob (or in Knative), state
# in an S3 bucket. Usage: cp terraform.tfvars.example terraform.tfvars; terraform init; terraform apply

terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
    kustomization = {
      source  = "kbst/kustomization"
      version = "~> 0.9.6"
    }
  }
}

provider "aws" {
  region = var.region
}

provider "kustomization" {
  kubeconfig_path = var.kubeconfig_path
  context         = var.kube_context
}

module "s3_state" {
  source = "../../modules/s3-state"

  bucket_name       = var.bucket_name
  namespace         = var.namespace
  oidc_provider_arn = var.oidc_provider_arn
  oidc_provider_url = var.oidc_provider_url
}

module "bot" {
  source = "../.."

  namespace                   = var.namespace
  image                       = var.image
  matrix_room_id              = var.matrix_room_id
  schedule                    = var.schedule
  trigger_mode                = var.trigger_mode
  state_backend               = "s3"
  state_bucket                = module.s3_state.bucket_name
  state_prefix                = module.s3_state.prefix
  service_account_annotations = module.s3_state.service_account_annotations
  settings                    = module.s3_state.settings
}
