#!/usr/bin/env bash
# Blue/green deploy of the compose stack behind nginx (deploy/nginx.conf):
#
#   deploy/deploy.sh TAG        build (or pull) sesame-voice:TAG and make it live
#
# 1. build the image sesame-voice:TAG (SKIP_BUILD=1 to use one already pulled)
# 2. start the idle colour's gateway (gateway-blue on 127.0.0.1:8001, gateway-green on :8002)
#    with that image, and wait until its /ready answers 200 (DEPLOY_READY_TIMEOUT, 180 s)
# 3. switch nginx's upstream to it and `nginx -s reload` (deploy/switch-upstream.sh)
# 4. drain the old gateway: SIGTERM; it stops accepting, lets the turns in flight finish
#    (SESAME_DRAIN_TIMEOUT_MS), closes each websocket with 1012 + a `reconnect` message (clients
#    reconnect through nginx to the new one), and exits; `docker compose stop -t` bounds it
# 5. roll the workers one at a time (each is its own service and broker user: worker-a,
#    worker-b, ...): recreate it with the new image (the old one drains on SIGTERM first) and wait
#    until it is healthy before the next; the others serve meanwhile
# 6. record TAG as live, the previous one, and a line in the history for deploy/rollback.sh
#    (DEPLOY_STATE_DIR)
set -euo pipefail
tag=${1:?usage: deploy.sh TAG}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
state=${DEPLOY_STATE_DIR:-/var/lib/sesame-voice/deploy}
compose=${COMPOSE:-docker compose}
ready_timeout=${DEPLOY_READY_TIMEOUT:-180}
drain_s=${DEPLOY_DRAIN_S:-40}
mkdir -p "$state"
cd "$root"

live=$(cat "$state/colour" 2>/dev/null || echo green)
if [ "$live" = blue ]; then new=green; port=8002; else new=blue; port=8001; fi
old=$live
echo "deploy: $tag as $new (port $port); live now: $old"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    SESAME_TAG=$tag $compose build "gateway-$new"
fi

SESAME_TAG=$tag $compose up -d --no-deps "gateway-$new"
deadline=$((SECONDS + ready_timeout))
until curl -fsS -o /dev/null "http://127.0.0.1:$port/ready"; do
    if [ $SECONDS -ge $deadline ]; then
        echo "deploy: gateway-$new not ready within ${ready_timeout}s; live stays $old" >&2
        $compose stop "gateway-$new"
        exit 1
    fi
    sleep 1
done
echo "deploy: gateway-$new is ready"

"$here/switch-upstream.sh" "127.0.0.1:$port"

if $compose ps --status running --services | grep -qx "gateway-$old"; then
    echo "deploy: draining gateway-$old (up to ${drain_s}s)"
    $compose stop -t "$drain_s" "gateway-$old"
fi

# Workers, one at a time: each is recreated with the new image and healthy before the next.
for service in $($compose config --services | grep -x 'worker-.*'); do
    SESAME_TAG=$tag $compose up -d --no-deps -t "$drain_s" "$service"
    id=$($compose ps -q "$service")
    deadline=$((SECONDS + ready_timeout))
    until [ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" = healthy ]; do
        if [ $SECONDS -ge $deadline ]; then
            echo "deploy: $service not healthy within ${ready_timeout}s; stopping here" >&2
            exit 1
        fi
        sleep 2
    done
    echo "deploy: $service runs $tag"
done

cp "$state/tag" "$state/previous_tag" 2>/dev/null || true
echo "$tag" >"$state/tag"
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $tag" >>"$state/history"  # deploy/rollback.sh --list
echo "$new" >"$state/colour"
echo "deploy: $tag is live on $new"
