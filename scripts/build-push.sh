#!/usr/bin/env bash
# Build the image for amd64 and arm64 with provenance and an SBOM, push it, and check
# the pushed manifest list. The tag comes from the manifests (one source of truth):
# deploy/components/common/kustomization.yaml, images[0].newTag.
#
# usage: scripts/build-push.sh [REPOSITORY]
#   REPOSITORY  where to push, e.g. ghcr.io/me/claude-matrix-bot; default $IMAGE_REPOSITORY,
#               else the newName in that kustomization.
# env:  PLATFORMS (default linux/amd64,linux/arm64), DOCKER (default docker)
# Needs a buildx builder that can push multi-platform images (docker-container driver):
#   docker buildx create --use --name cmb
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
images_file="$repo_root/deploy/components/common/kustomization.yaml"
platforms="${PLATFORMS:-linux/amd64,linux/arm64}"
docker="${DOCKER:-docker}"

die() {
  echo "build-push: $*" >&2
  exit 1
}

# The first value of `key:` inside the images: list (no yq needed for this flat file).
image_field() {
  awk -v key="$1" '
    /^images:/ { inside = 1; next }
    inside && /^[^[:space:]-]/ { inside = 0 }
    inside {
      line = $0
      sub(/^[[:space:]-]*/, "", line)
      if (index(line, key ":") == 1) {
        value = substr(line, length(key) + 2)
        gsub(/^[[:space:]]+|[[:space:]]+$|["\047]/, "", value)
        print value
        exit
      }
    }' "$images_file"
}

[[ -f "$images_file" ]] || die "missing $images_file"
tag="$(image_field newTag)"
default_repository="$(image_field newName)"
[[ -n "$tag" ]] || die "no images[].newTag in $images_file"
[[ "$tag" != "latest" ]] || die "refusing to push 'latest': pin a version in $images_file"

repository="${1:-${IMAGE_REPOSITORY:-$default_repository}}"
[[ -n "$repository" ]] || die "no repository: pass one, set IMAGE_REPOSITORY, or set images[].newName"
[[ "$repository" != *OWNER* ]] || die "replace OWNER in '$repository' (argument, IMAGE_REPOSITORY or $images_file)"
image="$repository:$tag"

echo "build-push: building $image for $platforms" >&2
"$docker" buildx build \
  --platform "$platforms" \
  --provenance=true \
  --sbom=true \
  --tag "$image" \
  --push \
  "$repo_root"

echo "build-push: verifying the pushed manifest list" >&2
raw="$("$docker" buildx imagetools inspect --raw "$image")" || die "cannot inspect $image after the push"
IMAGE_INDEX="$raw" WANTED="$platforms" python3 - <<'PY' || die "pushed manifest list of $image is incomplete"
import json
import os
import sys

index = json.loads(os.environ["IMAGE_INDEX"])
found = {
    f"{m['platform']['os']}/{m['platform']['architecture']}"
    + (f"/{m['platform']['variant']}" if m["platform"].get("variant") else "")
    for m in index.get("manifests", [])
    if m.get("platform", {}).get("os") not in (None, "unknown")
}
# Provenance and SBOM travel as attestation manifests (platform unknown/unknown).
attestations = [
    m for m in index.get("manifests", [])
    if m.get("annotations", {}).get("vnd.docker.reference.type") == "attestation-manifest"
]
missing = [p for p in os.environ["WANTED"].split(",") if p not in found]
if missing:
    print(f"build-push: missing platforms: {', '.join(missing)} (found: {', '.join(sorted(found))})", file=sys.stderr)
    sys.exit(1)
if not attestations:
    print("build-push: no attestation manifests (provenance/SBOM) in the pushed index", file=sys.stderr)
    sys.exit(1)
print(f"build-push: ok: {', '.join(sorted(found))} + {len(attestations)} attestation manifest(s)", file=sys.stderr)
PY

if [[ "$repository" != "$default_repository" ]]; then
  echo "build-push: the manifests still name $default_repository: set images[0].newName" >&2
  echo "  in ${images_file#"$repo_root"/} to $repository so they deploy this image" >&2
fi
echo "$image"
