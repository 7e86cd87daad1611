#!/usr/bin/env bash
# Go back to the image tag that was live before the last deploy: the same blue/green steps
# (deploy/deploy.sh) with that tag, no build (the image is still there).
#
#   deploy/rollback.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${DEPLOY_STATE_DIR:-/var/lib/sesame-voice/deploy}
previous=$(cat "$state/previous_tag" 2>/dev/null || true)
if [ -z "$previous" ]; then
    echo "rollback: no previous tag recorded in $state" >&2
    exit 1
fi
current=$(cat "$state/tag" 2>/dev/null || echo "?")
echo "rollback: $current -> $previous"
SKIP_BUILD=1 "$here/deploy.sh" "$previous"
