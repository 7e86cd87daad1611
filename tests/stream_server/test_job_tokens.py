"""Job ids' random part: whole base64 characters, never repeated, and a forked child's own."""

from __future__ import annotations

import os
import re

import pytest

from stream_server.core import job_tokens
from stream_server.core.job_tokens import TOKEN_CHARS, TokenBlock


def test_ids_are_url_safe_and_distinct_across_blocks() -> None:
    tokens = TokenBlock(per_block=4)
    ids = [tokens() for _ in range(13)]  # three blocks and one id of a fourth
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{24}", i) for i in ids) and TOKEN_CHARS == 24
    assert len(set(ids)) == len(ids)


def test_one_draw_from_the_os_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    draws: list[int] = []
    real = os.urandom

    def urandom(n: int) -> bytes:
        draws.append(n)
        return real(n)

    monkeypatch.setattr(job_tokens.os, "urandom", urandom)
    tokens = TokenBlock(per_block=8)
    for _ in range(16):
        tokens()
    assert draws == [18 * 8, 18 * 8]
    tokens.discard()
    tokens()
    assert len(draws) == 3  # what was left of the block is not used


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    tokens = TokenBlock(per_block=64)
    tokens()  # the parent has a block drawn
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.close(read)
        os.write(write, tokens().encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    parents_next = [tokens() for _ in range(63)]  # the rest of the parent's block
    assert len(child) == TOKEN_CHARS
    assert child not in parents_next
