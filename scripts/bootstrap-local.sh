#!/usr/bin/env bash
# Collect what the bot needs to run, into local/ (git-ignored, private):
#   local/oauth-tokens/{accessToken,refreshToken,expiresAt}   from Claude Code's login
#   local/matrix-bot/{homeserver_url,user_id,access_token,device_id}
#   local/env                                                 MATRIX_ROOM_ID, LOCAL_MODE, STATE_URL
#   local/state/                                              state + Matrix key store (docker run)
# then print the docker-run (LOCAL_MODE) and kubectl-create-secret recipes.
#
# usage: scripts/bootstrap-local.sh [CLAUDE_CONFIG_DIR]
#        scripts/bootstrap-local.sh NAME=CLAUDE_CONFIG_DIR [NAME=CLAUDE_CONFIG_DIR ...]
#   The Claude login is read from DIR/.credentials.json, DIR being the argument, else
#   $CLAUDE_CONFIG_DIR, else ~/.claude. Matrix values are prompted for; existing ones are
#   offered as defaults (Enter keeps them), so running it again is safe.
#   Several accounts (docs/design.md §6), e.g. `work=~/.claude-work priv=~/.claude-priv`: each login
#   goes to local/oauth-tokens/NAME/, and local/env gets ACCOUNTS=work,priv. NAME is 1-32
#   characters a-z, 0-9 or '-'.
#   LOCAL_DIR overrides the output directory (default: local/ in the repository).
# Tokens are never echoed: not on the terminal, not in this script's output.
set -euo pipefail
umask 077

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
local_dir="${LOCAL_DIR:-$repo_root/local}"

say() { echo "bootstrap-local: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# accounts[i] is an account name (empty: the single-account layout), sources[i] its login dir.
accounts=()
sources=()
if [[ $# -gt 0 && "$1" == *=* ]]; then
  for pair in "$@"; do
    [[ "$pair" == *=* ]] || die "with several accounts every argument is NAME=CLAUDE_CONFIG_DIR, got '$pair'"
    name="${pair%%=*}"
    dir="${pair#*=}"
    dir="${dir/#\~/$HOME}"
    [[ "$name" =~ ^[a-z0-9-]{1,32}$ ]] || die "account name '$name' must be 1-32 characters a-z, 0-9 or '-'"
    [[ "$name" != nio ]] || die "account name 'nio' is reserved (the Matrix key store lives under nio/)"
    [[ -n "$dir" ]] || die "account $name: no CLAUDE_CONFIG_DIR after '='"
    for i in "${!accounts[@]}"; do
      [[ "${accounts[$i]}" != "$name" ]] || die "account $name is named twice"
      # One login for two accounts: each refresh would log the other one out.
      if [[ -d "$dir" && -d "${sources[$i]}" && "$(cd "$dir" && pwd -P)" == "$(cd "${sources[$i]}" && pwd -P)" ]]; then
        die "accounts ${accounts[$i]} and $name read the same login $dir: give each account its own"
      fi
    done
    accounts+=("$name")
    sources+=("$dir")
  done
else
  [[ $# -le 1 ]] || die "one CLAUDE_CONFIG_DIR, or several NAME=CLAUDE_CONFIG_DIR (e.g. work=~/.claude-work priv=~/.claude-priv)"
  accounts+=("")
  sources+=("${1:-${CLAUDE_CONFIG_DIR:-$HOME/.claude}}")
fi

command -v python3 >/dev/null || die "python3 is needed to read the Claude login"
for i in "${!accounts[@]}"; do
  credentials="${sources[$i]}/.credentials.json"
  for_account="${accounts[$i]:+ for account ${accounts[$i]}}"
  example="${accounts[$i]:+${accounts[$i]}=}~/.claude-bot"
  [[ -f "$credentials" ]] || die "no Claude login$for_account at $credentials: run 'CLAUDE_CONFIG_DIR=~/.claude-bot claude' and log in, then: $0 $example"
done

# Sharing the laptop's own login: the bot's first refresh rotates the refresh token,
# and the laptop's copy stops working (Claude Code asks to log in again).
for source_dir in "${sources[@]}"; do
  if [[ "$(cd "$source_dir" && pwd -P)" == "$(cd "$HOME" 2>/dev/null && pwd -P)/.claude" ]]; then
    say "WARNING: $source_dir is your own Claude Code login. Refresh tokens rotate: when the bot"
    say "  refreshes, this laptop gets logged out (and vice versa). Prefer a separate login:"
    say "    CLAUDE_CONFIG_DIR=~/.claude-bot claude      # log in once, then /exit"
    say "    $0 ~/.claude-bot"
  fi
done

mkdir -p "$local_dir/oauth-tokens" "$local_dir/matrix-bot" "$local_dir/state"
chmod 700 "$local_dir" "$local_dir/oauth-tokens" "$local_dir/matrix-bot" "$local_dir/state"

for i in "${!accounts[@]}"; do
  credentials="${sources[$i]}/.credentials.json"
  tokens_dir="$local_dir/oauth-tokens${accounts[$i]:+/${accounts[$i]}}"
  mkdir -p "$tokens_dir"
  chmod 700 "$tokens_dir"
  # The tokens go straight from the JSON file to their files, never through the shell.
  CREDENTIALS="$credentials" TOKENS_DIR="$tokens_dir" ACCOUNT="${accounts[$i]}" python3 - <<'PY' || die "could not read the Claude login"
import json
import os
import sys
import time

path = os.environ["CREDENTIALS"]
try:
    with open(path, encoding="utf-8") as handle:
        oauth = json.load(handle)["claudeAiOauth"]
    values = {
        "accessToken": str(oauth["accessToken"]),
        "refreshToken": str(oauth["refreshToken"]),
        "expiresAt": str(int(oauth["expiresAt"])),
    }
except (OSError, ValueError, KeyError, TypeError) as exc:
    # Name the problem, never the content.
    print(f"bootstrap-local: error: {path}: expected claudeAiOauth.accessToken/refreshToken/expiresAt "
          f"({type(exc).__name__})", file=sys.stderr)
    sys.exit(1)
if not values["accessToken"] or not values["refreshToken"]:
    print(f"bootstrap-local: error: {path}: empty token", file=sys.stderr)
    sys.exit(1)
target = os.environ["TOKENS_DIR"]
for name, value in values.items():
    temporary = os.path.join(target, f".{name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value)
    os.chmod(temporary, 0o600)
    os.replace(temporary, os.path.join(target, name))
expires_in = int(values["expiresAt"]) / 1000 - time.time()
state = f"expires in {expires_in / 3600:.1f} h" if expires_in > 0 else "already expired: the bot refreshes it on its first run"
scopes = oauth.get("scopes") or []
account = f" of account {os.environ['ACCOUNT']}" if os.environ.get("ACCOUNT") else ""
print(f"bootstrap-local: OAuth tokens{account} copied (access token {state})", file=sys.stderr)
if scopes and "user:profile" not in scopes:
    print(f"bootstrap-local: WARNING: the login{account} lacks the user:profile scope; the usage endpoint will answer 403",
          file=sys.stderr)
PY
done

# Several accounts: ACCOUNTS for local/env, and the one Secret's <name>.<key> entries.
accounts_line=""
secret_sources="--from-file=$local_dir/oauth-tokens"
if [[ -n "${accounts[0]}" ]]; then
  accounts_line="ACCOUNTS=$(IFS=,; echo "${accounts[*]}")
"
  secret_sources=""
  for name in "${accounts[@]}"; do
    for key in accessToken refreshToken expiresAt; do
      secret_sources+="${secret_sources:+ \\
    }--from-file=$name.$key=$local_dir/oauth-tokens/$name/$key"
    done
  done
fi

# current VALUE of a file, or empty
current() { if [[ -f "$1" ]]; then cat -- "$1"; fi; }

# env_value KEY: the value of KEY= in local/env, or empty
env_value() {
  if [[ -f "$local_dir/env" ]]; then
    sed -n "s/^$1=//p" "$local_dir/env" | tail -n 1
  fi
}

# ask VAR PROMPT DEFAULT PATTERN SECRET: read one answer into VAR; Enter keeps DEFAULT.
# Invalid answers are asked again (three tries); end of input keeps the default.
ask() {
  # printf -v instead of a nameref: macOS still ships bash 3.2.
  local prompt="$2" default="$3" pattern="$4" secret="$5" reply shown tries=0
  if [[ -z "$default" ]]; then
    shown=""
  elif [[ "$secret" == yes ]]; then
    shown=" [Enter keeps the saved one]"
  else
    shown=" [$default]"
  fi
  while ((tries < 3)); do
    tries=$((tries + 1))
    reply=""
    if [[ "$secret" == yes ]]; then
      IFS= read -r -s -p "$prompt$shown: " reply || true
      echo >&2
    else
      IFS= read -r -p "$prompt$shown: " reply || true
    fi
    reply="${reply#"${reply%%[![:space:]]*}"}"
    reply="${reply%"${reply##*[![:space:]]}"}"
    [[ -n "$reply" ]] || reply="$default"
    if [[ -n "$reply" && "$reply" =~ $pattern ]]; then
      printf -v "$1" '%s' "$reply"
      return 0
    fi
    say "not valid: $prompt must match $pattern"
  done
  die "no valid value for: $prompt"
}

# write_private FILE VALUE: atomic, mode 600
write_private() {
  local temporary
  temporary="$(dirname "$1")/.$(basename "$1").tmp"
  printf '%s' "$2" >"$temporary"
  chmod 600 "$temporary"
  mv -f "$temporary" "$1"
}

creds="$local_dir/matrix-bot"
homeserver_url="" user_id="" access_token="" device_id="" room_id=""
say "Matrix: the bot's own account. Log it in once with (it writes these files and signs the device):"
say "  MATRIX_CREDS_DIR=$creds STATE_URL=file://$local_dir/state claude-matrix-bot matrix-login --homeserver URL --user NAME"
say "then press Enter below to keep what it wrote."
ask homeserver_url "Homeserver URL" "$(current "$creds/homeserver_url")" '^https?://[^[:space:]/]+' no
ask user_id "Bot user id (@bot:example.org)" "$(current "$creds/user_id")" '^@[^:[:space:]]+:[^[:space:]]+$' no
ask access_token "Bot access token" "$(current "$creds/access_token")" '^[^[:space:]]+$' yes
ask device_id "Bot device id" "$(current "$creds/device_id")" '^[^[:space:]]+$' no
ask room_id "Alert room id (!room:example.org)" "$(env_value MATRIX_ROOM_ID)" '^![^:[:space:]]+:[^[:space:]]+$' no

write_private "$creds/homeserver_url" "${homeserver_url%/}"
write_private "$creds/user_id" "$user_id"
write_private "$creds/access_token" "$access_token"
write_private "$creds/device_id" "$device_id"
write_private "$local_dir/env" "MATRIX_ROOM_ID=$room_id
LOCAL_MODE=1
STATE_URL=file:///state
$accounts_line"

config_accounts="${accounts_line:+ and ${accounts_line%$'\n'}}"
say "done: $local_dir (oauth-tokens/, matrix-bot/, env, state/), private to you"
cat <<EOF

Next steps
==========
Run one cycle locally (LOCAL_MODE: refreshed tokens are written back to local/oauth-tokens;
keep the device's key store in local/state, or the room sees "unable to decrypt"):

  docker run --rm --read-only --tmpfs /tmp --user "\$(id -u):\$(id -g)" \\
    --env-file $local_dir/env \\
    -v "$local_dir/oauth-tokens:/var/run/secrets/oauth-tokens" \\
    -v "$local_dir/matrix-bot:/var/run/secrets/matrix-bot:ro" \\
    -v "$local_dir/state:/state" \\
    ghcr.io/OWNER/claude-matrix-bot:0.1.0 claude-matrix-bot run

Or hand the same values to a cluster (then stop running it locally: the refresh token
works only once, so only one place may hold it):

  kubectl create namespace claude-matrix-bot
  kubectl -n claude-matrix-bot create secret generic claude-oauth-tokens \\
    $secret_sources
  kubectl -n claude-matrix-bot create secret generic matrix-bot-creds \\
    --from-file=$local_dir/matrix-bot
  # optional second factor for HTTP triggers (with the PingSource, also set its
  # ceOverrides: see docs/deploy.md):
  kubectl -n claude-matrix-bot create secret generic claude-matrix-bot-trigger \\
    --from-literal=token="\$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"

and set MATRIX_ROOM_ID=$room_id$config_accounts in deploy/base/config.env (or your overlay).
See docs/deploy.md.
EOF
