"""The random part of every job id, drawn from the OS a block at a time (issue 20).

``secrets.token_urlsafe(16)`` per job was a system call and a base64 encoding on the path of each
sentence's first job, ~13 us of it after an idle spell. Here one ``os.urandom`` call draws the bits
of ``per_block`` ids and one encoding makes their text: each id is the next 24 characters (18
bytes, 144 bits, URL-safe base64 without padding), so an id still cannot be guessed
(docs/security.md). A process made by ``fork`` draws a block of its own before its first id: it
must not repeat its parent's.
"""

from __future__ import annotations

import base64
import os

TOKEN_BYTES = 18  # a multiple of 3: each id is whole base64 characters, no padding
TOKEN_CHARS = TOKEN_BYTES * 4 // 3


class TokenBlock:
    def __init__(self, per_block: int = 256) -> None:
        self.per_block = per_block
        self._text = ""
        self._at = 0
        os.register_at_fork(after_in_child=self.discard)

    def __call__(self) -> str:
        at = self._at
        if at >= len(self._text):
            self._text = base64.urlsafe_b64encode(os.urandom(TOKEN_BYTES * self.per_block)).decode("ascii")
            at = 0
        self._at = at + TOKEN_CHARS
        return self._text[at : at + TOKEN_CHARS]

    def discard(self) -> None:
        """Forget the block drawn: the next id comes from a new one."""
        self._text, self._at = "", 0


job_token = TokenBlock()  # the process's ids; one at-fork hook, not one per scheduler
