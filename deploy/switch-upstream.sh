#!/usr/bin/env bash
# Point nginx's `sesame_gateway` upstream at one gateway and reload nginx: new connections go
# there at once; websockets already open stay on the old gateway (nginx's old workers keep them
# until they close; the old gateway drains them with close code 1012).
#
#   deploy/switch-upstream.sh HOST:PORT
#
# NGINX_UPSTREAM_CONF  the file nginx includes (default /etc/nginx/sesame/upstream.conf)
# NGINX                how to call nginx (default "nginx"; e.g. "nginx -p /srv/nginx -c nginx.conf")
set -euo pipefail
target=${1:?usage: switch-upstream.sh HOST:PORT}
conf=${NGINX_UPSTREAM_CONF:-/etc/nginx/sesame/upstream.conf}
nginx_cmd=${NGINX:-nginx}

tmp=$(mktemp "${conf}.XXXXXX")
cat >"$tmp" <<CONF
# Written by deploy/switch-upstream.sh at $(date -u +%Y-%m-%dT%H:%M:%SZ)
upstream sesame_gateway {
    server ${target};
    keepalive 32;
}
CONF
previous=$(mktemp "${conf}.prev.XXXXXX")
cp "$conf" "$previous" 2>/dev/null || : >"$previous"
mv "$tmp" "$conf"
# A config nginx rejects is put back, and the running nginx is never reloaded with it.
if ! $nginx_cmd -t -q; then
    mv "$previous" "$conf"
    echo "switch-upstream: nginx rejected the new config; upstream unchanged" >&2
    exit 1
fi
rm -f "$previous"
$nginx_cmd -s reload
echo "switch-upstream: sesame_gateway -> ${target}"
