#!/usr/bin/env bash
# Go back to an image tag that was live before: the same blue/green steps (deploy/deploy.sh) with
# that tag, no build (the image is still there).
#
#   deploy/rollback.sh          the tag live before the last deploy (the plan's rollback step 3)
#   deploy/rollback.sh TAG      any tag deployed before, e.g. the last one before the hardening
#                               (the plan's step 4, "full rollback")
#   deploy/rollback.sh --list   the deploys recorded, oldest first
#
# DEPLOY_STATE_DIR (/var/lib/sesame-voice/deploy) holds tag, previous_tag and history, written by
# deploy.sh; DEPLOY_SH names the deploy script (default: deploy.sh beside this one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=${DEPLOY_STATE_DIR:-/var/lib/sesame-voice/deploy}
deploy=${DEPLOY_SH:-$here/deploy.sh}
if [ "${1:-}" = --list ]; then
    cat "$state/history" 2>/dev/null || echo "rollback: no deploys recorded in $state" >&2
    exit 0
fi
target=${1:-$(cat "$state/previous_tag" 2>/dev/null || true)}
if [ -z "$target" ]; then
    echo "rollback: no previous tag recorded in $state" >&2
    exit 1
fi
if [ $# -gt 0 ] && ! cut -d' ' -f2 "$state/history" 2>/dev/null | grep -qxF "$target"; then
    echo "rollback: $target was never deployed here (deploy/rollback.sh --list)" >&2
    exit 1
fi
current=$(cat "$state/tag" 2>/dev/null || echo "?")
echo "rollback: $current -> $target"
SKIP_BUILD=1 "$deploy" "$target"
