"""Fair share's adapter (core/admission.py): opening a session within its client's share, and what a
dropped socket and a resume do to a session's sentences. The decisions are the core's; this
carries them out: sessions to close, jobs to stop at the engines, held sentences to submit."""

from __future__ import annotations

from collections.abc import Iterable

from broker import logs
from broker.errors import ProtocolError
from stream_server.hub.interpret import Interpreter
from stream_server.hub.live_sessions import CloseReason, Opened, SessionLink

log = logs.get("sesame.gateway")


class FairShare:
    def __init__(self, interpreter: Interpreter) -> None:
        self.interpreter = interpreter  # its sessions, scheduler, metrics, clock, close_session
        self.sessions = interpreter.sessions
        self.scheduler = interpreter.scheduler
        self.metrics = interpreter.metrics
        self.clock = interpreter.clock

    def open(
        self,
        voice: str,
        sample_rate: int,
        fmt: str,
        *,
        session_id: str | None,
        frames: int,
        client: str | None,
    ) -> SessionLink:
        """A new session, or ``Overloaded``; detached sessions whose room it took are closed."""
        try:
            opened: Opened = self.sessions.open(
                voice, sample_rate, fmt, session_id, frames, client=client, now=self.clock()
            )
        except ProtocolError as exc:
            self.metrics.dropped.labels(exc.code).inc()
            log.warning("session_refused", client=client, code=exc.code, error=str(exc))
            raise
        self._evict(old.session_id for old in opened.evicted)
        return opened.link

    def detached(self, link: SessionLink) -> None:
        """Its socket dropped (``detached.py``): no new audio; close what the detached cap says."""
        speaking = [seq for seq, st in link.core.sentences.items() if st.chunks or st.started]
        plan = self.sessions.admission.detach(link.session_id, self.clock(), speaking)
        if plan.pull_back:
            link.core.restart_sentences(plan.pull_back)
            self.interpreter.feed(self.scheduler.cancel_sentences(link.session_id, frozenset(plan.pull_back)))
        self._evict(plan.evict)

    def reattached(self, link: SessionLink) -> bool:
        """A client resumes it: False when the attached pool is full (it stays detached)."""
        admitted, released = self.sessions.admission.attach(link.session_id)
        self.interpreter.submit_released(released)
        return admitted

    def _evict(self, session_ids: Iterable[str]) -> None:
        for sid in session_ids:
            if (old := self.sessions.get(sid)) is not None:
                self.metrics.dropped.labels(CloseReason.DETACHED_EVICTED.value).inc()
                self.interpreter.close_session(old, CloseReason.DETACHED_EVICTED)
