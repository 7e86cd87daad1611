"""Where the gateway is: one URL (``--url`` or ``SESAME_URL``) read the same way by every client.

The plan's backend sets ``SESAME_URL=http://sesame-csm:8000``, an HTTP base; the websocket clients
used to want ``ws://host:8000/ws``. Both forms are taken, by ``say``, ``VoiceClient``, ``loadtest``
and ``replay`` alike:

    gateway_urls("http://sesame-csm:8000")       # http://sesame-csm:8000, ws://sesame-csm:8000/ws
    gateway_urls("https://voice.example/sesame")  # https://voice.example/sesame, wss://voice.example/sesame/ws
    gateway_urls("ws://127.0.0.1:8000/ws")        # http://127.0.0.1:8000, ws://127.0.0.1:8000/ws
    gateway_urls("wss://voice.example")           # https://voice.example, wss://voice.example/ws

Anything else raises ``BadUrl`` (a ``ValueError``) whose message is one line that says what was
wrong and what is wanted; the command-line clients print it and exit 2.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "http://127.0.0.1:8000"
WANTED = "an http(s) base (http://host:8000) or a ws(s) URL (ws://host:8000/ws)"
_HTTP = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_WS = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


class BadUrl(ValueError):
    """A gateway URL that is neither an http(s) base nor a ws(s) URL."""


@dataclass(frozen=True, slots=True)
class GatewayUrls:
    http: str  # the base of the HTTP routes, no trailing slash: http + "/tts"
    ws: str  # the websocket endpoint


def gateway_urls(url: str) -> GatewayUrls:
    """Both URLs of the gateway ``url`` names; ``BadUrl`` when it names none."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        why = f"has an invalid port or address ({exc})"
        raise BadUrl(f"the gateway URL {url!r} {why}; want {WANTED}") from None
    scheme = parts.scheme.lower()
    if scheme not in _WS:
        raise BadUrl(f"the gateway URL {url!r} is not {WANTED}")
    if not parts.hostname:
        raise BadUrl(f"the gateway URL {url!r} has no host; want {WANTED}")
    if any(c.isspace() for c in text) or parts.fragment:
        raise BadUrl(f"the gateway URL {url!r} has spaces or a #fragment; want {WANTED}")
    netloc = parts.netloc
    base = parts.path.rstrip("/")
    if scheme in ("ws", "wss"):
        ws_path = parts.path if base else "/ws"
        base = base.removesuffix("/ws")
    else:
        ws_path = base + "/ws"
    return GatewayUrls(
        http=urlunsplit((_HTTP[scheme], netloc, base, "", "")),
        ws=urlunsplit((_WS[scheme], netloc, ws_path, parts.query, "")),
    )


def configured_url(environ: Mapping[str, str] | None = None) -> str:
    """``SESAME_URL`` from the environment, else the local gateway."""
    env = os.environ if environ is None else environ
    return env.get("SESAME_URL", "").strip() or DEFAULT_URL
