"""How ``VoiceClient`` reconnects: the backoff, the resume URL, and the text a turn still has to say."""

from __future__ import annotations

import random
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


@dataclass(frozen=True, slots=True)
class Backoff:
    """Jittered exponential backoff between reconnect attempts."""

    first_s: float = 0.1
    max_s: float = 5.0
    attempts: int = 10

    def delay(self, attempt: int) -> float:
        return float(min(self.max_s, self.first_s * 2**attempt) * random.uniform(0.5, 1.0))


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
    return urlunsplit(parts._replace(query=urlencode(query + list(params.items()))))


def consume(unheard: str, sentence: str) -> str:
    """``unheard`` after the spoken ``sentence`` (the gateway normalizes whitespace in sentences)."""
    target = "".join(sentence.split())
    i = matched = 0
    while i < len(unheard) and matched < len(target):
        ch = unheard[i]
        if not ch.isspace():
            if ch != target[matched]:
                return unheard  # not a prefix: keep everything (better heard twice than lost)
            matched += 1
        i += 1
    return unheard[i:] if matched == len(target) else unheard
