# GKE with Workload Identity: the bot in Knative (or a CronJob), state in a GCS bucket.
# Usage: cp terraform.tfvars.example terraform.tfvars; terraform init; terraform apply

terraform {
  required_version = ">= 1.6.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.0"
    }
    kustomization = {
      source  = "kbst/kustomization"
      version = "~> 0.9.6"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "kustomization" {
  kubeconfig_path = var.kubeconfig_path
  context         = var.kube_context
}

module "gcs_state" {
  source = "../../modules/gcs-state"

  project_id  = var.project_id
  location    = var.region
  bucket_name = var.bucket_name
  namespace   = var.namespace
}

module "bot" {
  source = "../.."

  namespace                   = var.namespace
  image                       = var.image
  matrix_room_id              = var.matrix_room_id
  schedule                    = var.schedule
  trigger_mode                = var.trigger_mode
  state_backend               = "gcs"
  state_bucket                = module.gcs_state.bucket_name
  state_prefix                = module.gcs_state.prefix
  service_account_annotations = module.gcs_state.service_account_annotations
}
