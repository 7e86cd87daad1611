"""One pass of the hub over its work (``Interpreter._run_queue``): the frames a socket is sent
during it leave in one write at its end (issue 20).

A sentence's ``sentence_start`` and its first audio frame are made in one pass; written as they
were made, they were two writes, the first one waking the client. A socket's sender
(``http/send_now.py``) holds what it is given while a pass is open and is flushed when it ends (or
before a sentence's job is made in it: ``frames_now``), before the loop runs anything else:
nothing can come between, so the order on each socket is the order the frames were made in. What
can wait for the frames (``later``: the sessions' copies on MQTT, ``session_copies.py``) is
flushed after them.
"""

from __future__ import annotations

from typing import Protocol


class Held(Protocol):
    def flush(self) -> None: ...


class SendPass:
    def __init__(self) -> None:
        self.open = False
        self._held: list[Held] = []
        self._later: list[Held] = []

    def hold(self, sender: Held) -> None:
        """``sender`` holds frames until the pass ends."""
        self._held.append(sender)

    def later(self, flushable: Held) -> None:
        """``flushable`` holds what waits until the pass's frames are written."""
        self._later.append(flushable)

    def frames_now(self) -> None:
        """The frames held so far leave now; the pass goes on. Before a job is made in the pass
        (first audio releases the next sentence, core/lookahead.py): the frame is what a listener
        waits for, the job is not needed for a second."""
        held, self._held = self._held, []
        for sender in held:
            sender.flush()

    def begin(self) -> None:
        self.open = True

    def end(self) -> None:
        self.open = False
        self.frames_now()
        later, self._later = self._later, []
        for flushable in later:
            flushable.flush()
