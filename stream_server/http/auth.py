"""The bearer tokens shared by the websocket and HTTP routes (``Tokens``: SESAME_AUTH_TOKEN and
clients' own, SESAME_CLIENT_TOKENS), and who a request's client is for its fair share
(``client_identity``)."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from stream_server.config import GatewayConfig, is_loopback


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


@dataclass(frozen=True, slots=True)
class Holder:
    """Who a request's token says it is: ``name`` of the client whose own token it carries; None
    for the shared token (or when no token is needed): then the address tells clients apart."""

    name: str | None = None


@dataclass(frozen=True, slots=True)
class Tokens:
    """The tokens that may speak: the shared one and each client's own (``(name, token)``)."""

    shared: str | None = None
    clients: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, config: GatewayConfig) -> Tokens:
        return cls(config.auth_token, config.client_tokens)

    @property
    def required(self) -> bool:
        return self.shared is not None or bool(self.clients)

    def holder(self, headers: Mapping[str, str], query_token: str | None = None) -> Holder | None:
        """Who carries which token; None when tokens are required and none matches. Every token is
        compared, in constant time, whichever matches: the time taken says nothing."""
        if not self.required:
            return Holder()
        found: Holder | None = None
        if authorized(self.shared, headers, query_token) and self.shared is not None:
            found = Holder()
        for name, token in self.clients:
            if authorized(token, headers, query_token) and found is None:
                found = Holder(name)
        return found


def client_identity(client: tuple[str, int] | None, holder: Holder | None = None) -> str | None:
    """Whose share a request counts against (core/admission.py): the client its own token names
    (``token:NAME``; several addresses, one share; one address, several shares), else its address.
    Behind nginx that is the forwarded address (uvicorn takes X-Forwarded-For from the proxies in
    FORWARDED_ALLOW_IPS, loopback by default, rightmost first). The one shared SESAME_AUTH_TOKEN
    does not tell clients apart. None (each session a share of its own) for a client on this host
    itself with no token of its own: loopback with no forwarded address (a load test, ``say``,
    the supervisor's probes)."""
    if holder is not None and holder.name is not None:
        return f"token:{holder.name}"
    if client is None:
        return "addr:unknown"
    if is_loopback(client[0]):
        return None
    return f"addr:{client[0]}"
