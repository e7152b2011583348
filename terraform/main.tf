# Deploys the kustomize overlay that trigger_mode names, adjusted with values from
# Terraform (namespace, image, room, schedule, state) by a kustomization_overlay: the
# same manifests `kubectl apply -k` uses. The OAuth tokens and Matrix credentials are
# created out of band (docs/deploy.md), so they never land in Terraform state; the
# trigger token is generated here (it guards the HTTP trigger, not an account) and the
# optional key-store passphrase is taken from a sensitive input: both are in the state.

locals {
  deploy_dir = abspath("${path.module}/../deploy")
  overlays = {
    knative                 = "${local.deploy_dir}/overlays/knative"
    cronjob                 = "${local.deploy_dir}/overlays/cronjob"
    knative-cronjob-trigger = "${local.deploy_dir}/overlays/knative-cronjob-trigger"
  }
  bucket_state_component = "${local.deploy_dir}/components/bucket-state"

  # The image as the manifests name it after deploy/components/common is applied.
  manifest_image = yamldecode(file("${local.deploy_dir}/components/common/kustomization.yaml")).images[0]
  image = var.image == null ? null : regex(
    "^(?P<name>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$", var.image
  )

  state_url = var.state_backend == "pvc" ? "file:///state" : format(
    "%s://%s/%s", var.state_backend == "gcs" ? "gs" : "s3", coalesce(var.state_bucket, "MISSING"), trimsuffix(var.state_prefix, "/")
  )
  # ACCOUNTS only when several accounts are named: unset keeps the single-account layout.
  accounts_setting = { for key, value in { ACCOUNTS = join(",", var.accounts) } : key => value if length(var.accounts) > 0 }

  settings = merge(var.settings, local.accounts_setting, {
    MATRIX_ROOM_ID = var.matrix_room_id
    STATE_URL      = local.state_url
  })
  # What the one token Secret must hold (the Role still names only that Secret).
  token_secret_keys = length(var.accounts) == 0 ? ["accessToken", "refreshToken", "expiresAt"] : flatten([
    for name in var.accounts : ["${name}.accessToken", "${name}.refreshToken", "${name}.expiresAt"]
  ])

  knative      = var.trigger_mode != "cronjob"
  function_url = local.knative ? "http://claude-matrix-bot.${var.namespace}.svc.cluster.local" : null
  # The resource whose spec.schedule drives the cycles.
  schedule_target = var.trigger_mode == "knative" ? { group = "sources.knative.dev", kind = "PingSource" } : { group = "batch", kind = "CronJob" }
}

# Every request to the function must carry it (issue 21 item 4): the Service and the
# trigger CronJob read it from the Secret, the PingSource sends it as an extension.
resource "random_password" "trigger_token" {
  count   = local.knative ? 1 : 0
  length  = 48
  special = false
}

data "kustomization_overlay" "bot" {
  resources  = [local.overlays[var.trigger_mode]]
  components = var.state_backend == "pvc" ? [] : [local.bucket_state_component]
  namespace  = var.namespace

  dynamic "images" {
    for_each = local.image == null ? [] : [local.image]
    content {
      name     = local.manifest_image.newName
      new_name = images.value.name
      new_tag  = images.value.tag
      digest   = images.value.digest
    }
  }

  config_map_generator {
    name     = "claude-matrix-bot-config"
    behavior = "merge"
    literals = [for key in sort(keys(local.settings)) : "${key}=${local.settings[key]}"]
  }

  dynamic "config_map_generator" {
    for_each = var.trigger_mode == "knative-cronjob-trigger" ? [local.function_url] : []
    content {
      name     = "claude-matrix-bot-trigger-config"
      behavior = "merge"
      literals = ["FUNCTION_URL=${config_map_generator.value}"]
    }
  }

  dynamic "secret_generator" {
    for_each = local.knative ? ["token"] : []
    content {
      name     = "claude-matrix-bot-trigger"
      type     = "Opaque"
      literals = ["token=${random_password.trigger_token[0].result}"]
    }
  }

  dynamic "secret_generator" {
    for_each = nonsensitive(var.matrix_store_passphrase != null) ? ["passphrase"] : []
    content {
      name     = "claude-matrix-bot-store"
      type     = "Opaque"
      literals = ["passphrase=${var.matrix_store_passphrase}"]
    }
  }

  dynamic "patches" {
    for_each = var.trigger_mode == "knative" ? ["ping"] : []
    content {
      target = {
        group = "sources.knative.dev"
        kind  = "PingSource"
      }
      patch = jsonencode([{
        op    = "add"
        path  = "/spec/ceOverrides"
        value = { extensions = { triggertoken = random_password.trigger_token[0].result } }
      }])
    }
  }

  patches {
    target = {
      group = local.schedule_target.group
      kind  = local.schedule_target.kind
    }
    patch = jsonencode([{ op = "replace", path = "/spec/schedule", value = var.schedule }])
  }

  dynamic "patches" {
    for_each = length(var.service_account_annotations) == 0 ? [] : [var.service_account_annotations]
    content {
      patch = yamlencode({
        apiVersion = "v1"
        kind       = "ServiceAccount"
        metadata   = { name = "claude-matrix-bot", annotations = patches.value }
      })
    }
  }

  lifecycle {
    precondition {
      condition     = var.state_backend == "pvc" || var.state_bucket != null
      error_message = "state_bucket is required when state_backend is gcs or s3."
    }
  }
}

# Namespaces (and CRDs) first, then everything else, then webhooks: the provider's
# documented ordering by ids_prio.
resource "kustomization_resource" "p0" {
  for_each = data.kustomization_overlay.bot.ids_prio[0]
  manifest = data.kustomization_overlay.bot.manifests[each.value]
}

resource "kustomization_resource" "p1" {
  for_each = data.kustomization_overlay.bot.ids_prio[1]
  manifest = data.kustomization_overlay.bot.manifests[each.value]

  depends_on = [kustomization_resource.p0]
}

resource "kustomization_resource" "p2" {
  for_each = data.kustomization_overlay.bot.ids_prio[2]
  manifest = data.kustomization_overlay.bot.manifests[each.value]

  depends_on = [kustomization_resource.p1]
}
