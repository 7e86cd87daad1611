"""``sesame-voice tiers``: see or change a running gateway's tier switch (``/admin/tiers``).

    sesame-voice tiers                     show: the tiers in the order tried now, preferred, disabled
    sesame-voice tiers prefer elevenlabs   that tier first (the plan's rollback step 1)
    sesame-voice tiers disable workers     skip a tier (not the last enabled one)
    sesame-voice tiers enable workers      use it again
    sesame-voice tiers reset               the configured order (SESAME_TIERS), nothing disabled

The gateway: ``--url`` (default SESAME_URL when it is an http(s) URL, else
http://127.0.0.1:SESAME_PORT). The token: ``--token`` or SESAME_AUTH_TOKEN (the gateway's full
token; a gateway without one refuses the switch). The change holds across reloads and restarts
until ``reset``, and is recorded as an incident on /status. Exit status: 0 done, 1 refused or
unreachable, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx

OPS = ("show", "prefer", "disable", "enable", "reset")


def _default_url(env: dict[str, str]) -> str:
    url = env.get("SESAME_URL", "")
    if url.startswith(("http://", "https://")):
        return url.rstrip("/")
    return f"http://127.0.0.1:{env.get('SESAME_PORT') or 8000}"


def _describe(view: dict[str, object]) -> str:
    def listed(value: object) -> str:
        return ", ".join(str(v) for v in value) if isinstance(value, list) and value else "-"

    return (
        f"tiers tried now: {listed(view.get('order'))}\n"
        f"preferred: {view.get('preferred') or '-'}; disabled: {listed(view.get('disabled'))}; "
        f"configured: {listed(view.get('configured'))}"
    )


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    parser = argparse.ArgumentParser(
        prog="sesame-voice tiers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("op", nargs="?", default="show", choices=OPS)
    parser.add_argument("tier", nargs="?", help="the tier (prefer, disable, enable)")
    parser.add_argument("--url", default=_default_url(env), help="the gateway (default: %(default)s)")
    parser.add_argument("--token", default=env.get("SESAME_AUTH_TOKEN"), help="default: SESAME_AUTH_TOKEN")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds")
    args = parser.parse_args(argv)
    takes_tier = args.op in ("prefer", "disable", "enable")
    if takes_tier != (args.tier is not None):
        parser.error(f"{args.op} takes {'a tier' if takes_tier else 'no tier'}")
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    url = f"{args.url.rstrip('/')}/admin/tiers"
    try:
        with httpx.Client(timeout=args.timeout, headers=headers) as client:
            if args.op == "show":
                response = client.get(url)
            else:
                response = client.post(url, json={"op": args.op, "tier": args.tier})
    except httpx.HTTPError as exc:
        print(f"sesame-voice tiers: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        print(
            f"sesame-voice tiers: {response.status_code} {error.get('code', '')}: {error.get('message', '')}",
            file=sys.stderr,
        )
        return 1
    if "changed" in body:
        print(body["changed"])
    print(_describe(body))
    return 0
