variable "namespace" {
  description = "Namespace for every resource (created by this module)."
  type        = string
  default     = "claude-matrix-bot"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a DNS-1123 label."
  }
}

variable "image" {
  description = "Image to run, REPOSITORY:TAG or REPOSITORY@sha256:DIGEST. null: the one named in deploy/components/common."
  type        = string
  default     = null

  validation {
    condition     = var.image == null || can(regex("^[^:@\\s]+(:[\\w][\\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$", var.image))
    error_message = "image must look like registry/name:tag or registry/name@sha256:<64 hex>."
  }
}

variable "matrix_room_id" {
  description = "Alert room (MATRIX_ROOM_ID), e.g. !abcdef:example.org."
  type        = string

  validation {
    condition     = can(regex("^![^:\\s]+:\\S+$", var.matrix_room_id))
    error_message = "matrix_room_id must look like !room:server."
  }
}

variable "schedule" {
  description = "Cron schedule of the trigger (PingSource or CronJob)."
  type        = string
  default     = "*/5 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.schedule))) == 5
    error_message = "schedule must be a five-field cron expression."
  }
}

variable "trigger_mode" {
  description = "knative: Knative Service + PingSource; cronjob: a CronJob running one cycle (no Knative); knative-cronjob-trigger: Knative Service + a CronJob running the trigger shim (no Eventing)."
  type        = string
  default     = "knative"

  validation {
    condition     = contains(["knative", "cronjob", "knative-cronjob-trigger"], var.trigger_mode)
    error_message = "trigger_mode must be knative, cronjob or knative-cronjob-trigger."
  }
}

variable "state_backend" {
  description = "Where state and the Matrix key store live: pvc (a PersistentVolumeClaim), gcs or s3 (a bucket, see modules/)."
  type        = string
  default     = "pvc"

  validation {
    condition     = contains(["pvc", "gcs", "s3"], var.state_backend)
    error_message = "state_backend must be pvc, gcs or s3."
  }
}

variable "state_bucket" {
  description = "Bucket name for state_backend gcs or s3 (e.g. module.gcs_state.bucket_name)."
  type        = string
  default     = null
}

variable "state_prefix" {
  description = "Object prefix inside state_bucket."
  type        = string
  default     = "claude-matrix-bot"
}

variable "service_account_annotations" {
  description = "Annotations for the bot's ServiceAccount: the cloud identity (iam.gke.io/gcp-service-account or eks.amazonaws.com/role-arn)."
  type        = map(string)
  default     = {}
}

variable "settings" {
  description = "More non-secret settings for the ConfigMap (docs/design.md §3), e.g. { WEEKLY_THRESHOLDS = \"50,80,95\" }."
  type        = map(string)
  default     = {}

  validation {
    condition = length(setintersection(keys(var.settings), [
      "TRIGGER_TOKEN", "MATRIX_STORE_PASSPHRASE", "MATRIX_ROOM_ID", "STATE_URL", "ACCOUNTS",
    ])) == 0
    error_message = "settings must not hold secrets (TRIGGER_TOKEN, MATRIX_STORE_PASSPHRASE) or the keys this module sets (MATRIX_ROOM_ID, STATE_URL, ACCOUNTS)."
  }
}

variable "accounts" {
  description = "Several Claude accounts in one room (ACCOUNTS, docs/design.md §6), e.g. [\"work\", \"priv\"]: the token Secret then holds <name>.accessToken, <name>.refreshToken and <name>.expiresAt for each (output token_secret_keys). Empty: one account, keys accessToken, refreshToken, expiresAt."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for name in var.accounts : can(regex("^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$", name))]) && length(distinct(var.accounts)) == length(var.accounts) && !contains(var.accounts, "nio")
    error_message = "accounts must be distinct names of 1-32 characters a-z, 0-9 or '-' that start and end with a letter or digit (not \"nio\", where the Matrix key store lives)."
  }
}

variable "matrix_store_passphrase" {
  description = "MATRIX_STORE_PASSPHRASE (optional): encrypts the Matrix key store at rest (cross-signing seeds, the Olm account). Put in the Secret claude-matrix-bot-store, which lands in Terraform state: keep that state encrypted, or leave this null and create the Secret out of band (docs/deploy.md). Set it before the bot's first Matrix login: a store written without it cannot be opened with it. null: the bot warns that its key store is unencrypted."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.matrix_store_passphrase == null || length(coalesce(var.matrix_store_passphrase, "x")) >= 16
    error_message = "matrix_store_passphrase must be at least 16 characters."
  }
}
