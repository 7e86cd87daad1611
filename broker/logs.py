"""structlog set-up: JSON lines in production, pretty in a terminal; context bound via contextvars."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Exact names of log fields that hold secrets (a substring match would also hide
# ``semantic_tokens``). Compared case-insensitively.
SECRET_KEYS = frozenset(
    {
        "password",
        "api_key",
        "token",
        "resume_token",
        "auth_token",
        "access_token",
        "secret",
        "authorization",
        "xi-api-key",
        "elevenlabs_api_key",
    }
)


def redact(_: object, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: a field named as a secret is logged as ``***``."""
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "***"
    return event


def configure(level: str = "INFO", json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        lvl = logging.INFO
    logging.basicConfig(level=lvl, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    # aiomqtt warns about "pending publish calls" under load; that is expected back-pressure, not news.
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    logging.getLogger("aiomqtt").setLevel(logging.ERROR)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        # sys.stderr as it is when a logger is made, not as it was here: a caller that swaps it
        # (a test's capture, closed after it) must not leave every later log line writing to a
        # closed file
        logger_factory=lambda *_: structlog.WriteLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )


def get(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
