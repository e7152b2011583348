# A private, versioned bucket for state.json, the lease and the Matrix key store, and
# a Google service account that the bot's Kubernetes ServiceAccount impersonates
# through GKE Workload Identity.

resource "google_storage_bucket" "state" {
  project                     = var.project_id
  name                        = var.bucket_name
  location                    = var.location
  force_destroy               = var.force_destroy
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = true
  }

  # Every cycle rewrites state.json: keep old versions for a while, not forever.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_service_account" "bot" {
  project      = var.project_id
  account_id   = var.google_service_account_id
  display_name = "claude-matrix-bot (state bucket)"
}

# Lets KSA namespace/name act as the Google service account.
resource "google_service_account_iam_member" "workload_identity" {
  service_account_id = google_service_account.bot.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.namespace}/${var.kubernetes_service_account}]"
}

locals {
  prefix = trimsuffix(var.prefix, "/")
}

# Read, conditional write (generation preconditions) and delete (lease release) of the
# objects under the bot's prefix only (issue 21 item 8: it used to be the whole bucket).
resource "google_storage_bucket_iam_member" "state_object_admin" {
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${google_service_account.bot.email}"

  condition {
    title       = "claude-matrix-bot prefix"
    description = "Objects under ${local.prefix}/ only."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.state.name}/objects/${local.prefix}/\")"
  }
}

# Listing is checked on the bucket, where a prefix condition cannot apply: the names of
# the bucket's objects (never their contents) may be listed. Keep the bucket to the bot.
resource "google_storage_bucket_iam_member" "state_list" {
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.legacyBucketReader"
  member = "serviceAccount:${google_service_account.bot.email}"
}
