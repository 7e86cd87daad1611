"""SentenceCache directly: bounded in bytes (LRU), TTL, keys normalize whitespace."""

from __future__ import annotations

from stream_server.core.cache import SentenceCache, cache_key

K1, K2, K3 = (
    cache_key("maya", 24_000, "One."),
    cache_key("maya", 24_000, "Two."),
    cache_key("maya", 24_000, "Three."),
)


def test_get_returns_what_was_put_until_the_ttl() -> None:
    c = SentenceCache(1000, ttl_s=10.0)
    c.put(K1, b"ab" * 10, "bark", now=0.0)
    hit = c.get(K1, now=10.0)
    assert hit is not None and (hit.pcm, hit.engine) == (b"ab" * 10, "bark")
    assert c.get(K1, now=10.1) is None
    assert len(c) == 0 and c.bytes == 0


def test_eviction_is_least_recently_used_by_bytes() -> None:
    c = SentenceCache(100, ttl_s=60.0)
    c.put(K1, b"x" * 40, "bark", 0.0)
    c.put(K2, b"y" * 40, "bark", 0.0)
    assert c.get(K1, 1.0) is not None  # K1 is now the most recent
    c.put(K3, b"z" * 40, "bark", 2.0)
    assert c.get(K2, 3.0) is None
    assert c.get(K1, 3.0) is not None and c.get(K3, 3.0) is not None
    assert c.bytes == 80


def test_too_large_or_empty_audio_is_not_stored() -> None:
    c = SentenceCache(10, ttl_s=60.0)
    c.put(K1, b"x" * 11, "bark", 0.0)
    c.put(K2, b"", "bark", 0.0)
    assert len(c) == 0 and c.bytes == 0


def test_putting_a_key_again_replaces_it_and_its_bytes() -> None:
    c = SentenceCache(100, ttl_s=60.0)
    c.put(K1, b"x" * 30, "bark", 0.0)
    c.put(K1, b"y" * 10, "bark", 1.0)
    hit = c.get(K1, 1.0)
    assert hit is not None and hit.pcm == b"y" * 10 and c.bytes == 10 and len(c) == 1


def test_keys_ignore_spacing_but_not_voice_rate_or_words() -> None:
    assert cache_key("maya", 24_000, "  One.\n") == cache_key("maya", 24_000, "One.")
    assert cache_key("maya", 24_000, "One  two.") == cache_key("maya", 24_000, "One two.")
    assert (
        len({cache_key("maya", 24_000, "a"), cache_key("other", 24_000, "a"), cache_key("maya", 16_000, "a")})
        == 3
    )
