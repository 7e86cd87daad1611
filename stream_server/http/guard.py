"""Limits before work: the ASGI layer in front of every route (docs/architecture.md, "Fair share").

For each HTTP request, in this order, before any route runs:

1. **Auth**, from the headers alone: no byte of a body is read for a request that may not be made.
   ``/tts`` and ``/v1/*`` need ``SESAME_AUTH_TOKEN`` or a client's own (``SESAME_CLIENT_TOKENS``)
   (``Authorization: Bearer``); ``/metrics``, ``/status`` and ``/api/*`` need
   ``SESAME_AUTH_TOKEN`` or the read-only ``SESAME_READ_TOKEN`` (also as ``?token=``,
   for the status page's EventSource, which cannot send headers); ``/health``, ``/ready`` and the
   static pages stay open. No token configured: all open (``main.py`` refuses that beyond
   loopback unless ``SESAME_ALLOW_OPEN=1``). 401 ``unauthorized``.
2. **Concurrency**: at most ``SESAME_HTTP_MAX_CONCURRENT`` requests at once; beyond, 429
   ``overloaded`` with ``Retry-After``.
3. **The body**, read here, streaming, up to ``SESAME_MAX_BODY_BYTES``: a larger declared
   ``Content-Length`` is refused before reading (413 ``too_large``), and reading stops at the
   first byte over; the whole body must arrive within ``SESAME_BODY_TIMEOUT`` (408 ``too_slow``).
   The route then gets the body from memory.

Websockets: when ``SESAME_ALLOWED_ORIGINS`` is set, an upgrade whose ``Origin`` is not listed is
refused (403) before it is accepted; the token is checked by the route. Slow headers are cut by the
protocol (``slow_headers.py``), which runs before any of this.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import parse_qs

from stream_server.http.auth import Tokens, authorized

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Access(Enum):
    OPEN = "open"
    READ = "read"  # the token or the read-only token
    WRITE = "write"  # the token


def access_of(path: str) -> Access:
    if path == "/tts" or path.startswith("/v1/"):
        return Access.WRITE
    if path in ("/metrics", "/status") or path.startswith("/api/"):
        return Access.READ
    return Access.OPEN


@dataclass(frozen=True, slots=True)
class GuardSettings:
    tokens: Tokens = field(default_factory=Tokens)  # SESAME_AUTH_TOKEN, SESAME_CLIENT_TOKENS
    read_token: str | None = None  # SESAME_READ_TOKEN
    max_body_bytes: int = 65_536  # SESAME_MAX_BODY_BYTES
    body_timeout_s: float = 10.0  # SESAME_BODY_TIMEOUT (ms in env)
    max_concurrent: int = 64  # SESAME_HTTP_MAX_CONCURRENT
    allowed_origins: tuple[str, ...] = ()  # SESAME_ALLOWED_ORIGINS; empty: any
    retry_after_s: float = 2.0


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class Guard:
    """The ASGI middleware. ``refused(code)`` is told every refusal (counted in a metric)."""

    def __init__(self, app: ASGIApp, settings: GuardSettings, refused: Callable[[str], None]) -> None:
        self.app = app
        self.settings = settings
        self.refused = refused
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if not self._origin_allowed(scope):
                self.refused("bad_origin")
                await send({"type": "websocket.close", "code": 1008, "reason": "origin not allowed"})
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if not self._authorized(scope, headers):
            self.refused("unauthorized")
            await _answer(send, 401, "unauthorized", "bad or missing bearer token")
            return
        if self.active >= self.settings.max_concurrent:
            self.refused("overloaded")
            retry = {"retry-after": str(max(1, round(self.settings.retry_after_s)))}
            await _answer(send, 429, "overloaded", "too many requests at once: try again", retry)
            return
        self.active += 1
        try:
            if scope["method"] in BODY_METHODS:
                try:
                    body = await self._read_body(headers, receive)
                except _Refusal as exc:
                    self.refused(exc.code)
                    await _answer(send, exc.status, exc.code, str(exc), {"connection": "close"})
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send)
        finally:
            self.active -= 1

    def _authorized(self, scope: Scope, headers: dict[str, str]) -> bool:
        s = self.settings
        access = access_of(scope["path"])
        if access is Access.OPEN or not s.tokens.required:
            return True
        if access is Access.WRITE:
            return s.tokens.holder(headers) is not None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        # Clients' own tokens speak; they do not see the service (fail closed without a shared one).
        ok = s.tokens.shared is not None and authorized(s.tokens.shared, headers, query)
        read = s.read_token is not None and authorized(s.read_token, headers, query)
        return ok or read

    def _origin_allowed(self, scope: Scope) -> bool:
        allowed = self.settings.allowed_origins
        return not allowed or _headers(scope).get("origin", "") in allowed

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        cap = self.settings.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            raise _Refusal(413, "too_large", f"the body is over {cap} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.settings.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Refusal(400, "client_gone", "the client left before its body ended")
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > cap:
                        raise _Refusal(413, "too_large", f"the body is over {cap} bytes")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _Refusal(408, "too_slow", "the body did not arrive in time") from None


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body from memory, then the real channel (a disconnect while the answer streams)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(
    send: Send, status: int, code: str, message: str, extra: dict[str, str] | None = None
) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
