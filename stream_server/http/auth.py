"""The bearer token (SESAME_AUTH_TOKEN) check shared by the websocket and HTTP routes, and who a
request's client is for its fair share (``client_identity``)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from stream_server.config import is_loopback


def authorized(token: str | None, headers: Mapping[str, str], query_token: str | None = None) -> bool:
    """True when no token is configured, or the request carries it (constant-time comparison)."""
    if token is None:
        return True
    expected = token.encode()
    auth = headers.get("authorization", "") or ""
    offered = [auth.encode("utf-8", "surrogateescape")]
    if query_token is not None:
        offered.append(query_token.encode("utf-8", "surrogateescape"))
    # Both candidates are always compared, so the time taken does not say which one was sent.
    bearer = hmac.compare_digest(offered[0], b"Bearer " + expected)
    query = len(offered) > 1 and hmac.compare_digest(offered[1], expected)
    return bearer or query


def client_identity(client: tuple[str, int] | None) -> str | None:
    """Whose share a request counts against (core/admission.py): its address. Behind nginx that is
    the forwarded address (uvicorn takes X-Forwarded-For from the proxies in FORWARDED_ALLOW_IPS,
    loopback by default, rightmost first). The one shared SESAME_AUTH_TOKEN does not tell clients
    apart. None (each session a share of its own) for a client on this host itself: loopback with
    no forwarded address (a load test, ``say``, the supervisor's probes)."""
    if client is None:
        return "addr:unknown"
    if is_loopback(client[0]):
        return None
    return f"addr:{client[0]}"
