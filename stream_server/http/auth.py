"""The bearer token (SESAME_AUTH_TOKEN) check shared by the websocket and HTTP routes, and who a
request's client is for its fair share (``client_identity``)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping


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


def client_identity(client: tuple[str, int] | None) -> str:
    """Whose share a request counts against (core/admission.py): its address. Behind nginx that is
    the forwarded address (uvicorn takes X-Forwarded-For from the proxies in FORWARDED_ALLOW_IPS,
    loopback by default). The one shared SESAME_AUTH_TOKEN does not tell clients apart."""
    return f"addr:{client[0]}" if client else "addr:unknown"
