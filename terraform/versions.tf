terraform {
  # Written for Terraform 1.6+ (also OpenTofu 1.6+); checked with `terraform fmt`.
  required_version = ">= 1.6.0"

  required_providers {
    # Builds the kustomize overlays in ../deploy and applies each resource, so the YAML
    # there stays the one source of truth (no manifest is copied into HCL).
    kustomization = {
      source  = "kbst/kustomization"
      version = "~> 0.9.6"
    }
    # Generates the trigger token (issue 21 item 4).
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}
