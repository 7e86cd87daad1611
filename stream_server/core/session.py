"""One client session's protocol: text in, sentences out, audio strictly in order. Pure.

The websocket handler, the MQTT text topic and ``POST /tts`` all drive a ``SessionCore`` with typed
messages and engine results, and carry out what it returns (``Out``, core/session_outs.py).

Ordering: sentences are numbered (``seq``) across the session. Several are synthesized at once,
but the client hears sentence N only after N-1 ended: audio of later sentences waits here. How many
go ahead is a budget of seconds of audio ahead of the listener (core/lookahead.py; ``dispatch_at``:
when the buffer will have played down to it); text beyond waits as text (cheap), up to
MAX_PENDING_CHARS, after which ``text`` frames are refused with ``text_backlog_full``. Text of a
sentence not yet complete is cut early when the listener would run dry first (core/playback.py).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from broker.audio import pcm16_frame
from broker.errors import ProtocolError
from broker.wire import Message
from broker.ws_protocol import (
    MAX_PENDING_CHARS,
    Cancelled,
    CancelTurn,
    Error,
    Fallback,
    Flush,
    Ready,
    SentenceEnd,
    SentenceStart,
    Speak,
    Start,
    Text,
    TurnEnd,
)
from stream_server.core.actions import Sentence
from stream_server.core.expiry import ExpiryBook
from stream_server.core.flood import DEFAULT_FLOOD, FloodGate, TokenBucket
from stream_server.core.lookahead import Lookahead, next_dispatch
from stream_server.core.playback import PlaybackClock, deadline_lead_s, expected_audio_s
from stream_server.core.segmenter import SentenceSegmenter
from stream_server.core.session_outs import CancelJobs, Dispatch, Emit, EmitAudio, EncodeAudio, Out, TurnOver


@dataclass(slots=True)
class SentenceState:
    sentence: Sentence
    dispatched: bool = False
    dispatched_at: float = 0.0
    heard_from: bool = False  # some of its audio has arrived (sent or not)
    engine: str = ""
    cached: bool = False
    chunks: list[bytes] = field(default_factory=list)  # pcm16 not yet sent (not playing yet)
    started: bool = False  # sentence_start sent
    restart_pending: bool = False
    sent_index: int = 0
    samples: int = 0
    done: bool = False
    error: Error | None = None


class SessionCore:
    def __init__(
        self,
        session_id: str,
        *,
        voice: str,
        sample_rate: int = 24_000,
        fmt: str = "pcm16",
        max_length: int = 200,
        first_chunk_min_chars: int = 0,
        lookahead: int = 3,
        lookahead_s: float = 8.0,
        flood: TokenBucket = DEFAULT_FLOOD,
        dispatch_times: ExpiryBook | None = None,
    ) -> None:
        self.session_id = session_id
        self.voice = voice
        self.sample_rate = sample_rate
        self.format = fmt
        self.max_length = max_length
        self.first_chunk_min_chars = first_chunk_min_chars
        self.lookahead = Lookahead(lookahead_s, lookahead)
        self.dispatch_at: float | None = None  # when the lookahead lets the next sentence go
        self.dispatch_moved = False  # dispatch_at changed: the hub's deadline task must look again
        self.dispatch_times = dispatch_times  # all sessions' dispatch_at (live_sessions.py)
        self.flood = FloodGate(flood)
        self.turn = 0
        self.next_seq = 0
        self.sentences: dict[int, SentenceState] = {}
        self.queue: deque[int] = deque()  # seqs in play order not yet finished
        self.turn_of_flush: int | None = None  # a flush was received for self.turn
        self._segmenter = self._new_segmenter()
        self.closed = False
        self.dropped_frames = 0
        self.playback = PlaybackClock()  # fed by whoever sends EmitAudio on (with ``now``)

    def _new_segmenter(self) -> SentenceSegmenter:
        return SentenceSegmenter(max_length=self.max_length, first_chunk_min_chars=self.first_chunk_min_chars)

    # ---- client input ---------------------------------------------------------------------

    def ready_message(self) -> Ready:
        return Ready(self.session_id, self.sample_rate, self.format, self.voice)

    def receive(self, msg: Message, now: float) -> list[Out]:
        """A decoded client message. Raises ProtocolError for input the session refuses."""
        return [out for step in self.steps(msg, now) for out in step]

    def steps(self, msg: Message, now: float) -> Iterator[list[Out]]:
        """``receive`` in steps, each to be carried out before the next is made: a ``speak``'s first
        sentence is dispatched before the rest of its text is cut, so that its first job leaves
        ~50 us sooner after an idle spell (issue 20). ProtocolError from the first step only."""
        self.flood.admit(now)
        self.playback.seen(now)
        match msg:
            case Start(voice=voice, format=fmt, sample_rate=rate):
                if self.next_seq > 0 or self._segmenter.pending:
                    raise ProtocolError("start is only allowed before the first text", code="bad_state")
                self.voice = voice or self.voice
                self.format, self.sample_rate = fmt, rate
                yield [Emit(self.ready_message())]
            case Text(text=text):
                yield self._text(text) + self._deadline_cut()
            case Flush():
                yield self._flush()
            case Speak(text=text):
                yield self._text(text, most=1)
                yield self._add_sentences(self._segmenter.feed()) + self._flush()
            case CancelTurn():
                yield self.cancel()
            case _:
                raise ProtocolError(f"unexpected message {msg.type!r}", code="unknown_type")

    def pending_chars(self) -> int:
        queued = sum(len(st.sentence.text) for st in self.sentences.values() if not st.dispatched)
        return queued + len(self._segmenter.pending)

    def _text(self, text: str, most: int | None = None) -> list[Out]:
        if self.pending_chars() + len(text) > MAX_PENDING_CHARS:
            raise ProtocolError(
                f"more than {MAX_PENDING_CHARS} characters waiting to be spoken", code="text_backlog_full"
            )
        return self._add_sentences(self._segmenter.feed(text, most=most))

    def _deadline_cut(self) -> list[Out]:
        """Streamed text: cut the pending text early if the listener would run dry before it is
        complete (core/playback.py; a real-time listener only: an HTTP response has none)."""
        ahead_s, lead_s = self.audio_ahead_s(self.next_seq), deadline_lead_s(self._segmenter.pending)
        if self.lookahead.seconds < math.inf and self.playback.runs_dry(ahead_s, self.playback.now, lead_s):
            return self._add_sentences(self._segmenter.cut_for_deadline())
        return []

    def _flush(self) -> list[Out]:
        outs = self._add_sentences(self._segmenter.flush())
        self.turn_of_flush = self.turn
        return outs + self._advance()

    def _add_sentences(self, texts: list[str]) -> list[Out]:
        for text in texts:
            if not text.strip():
                continue
            seq = self.next_seq
            self.next_seq += 1
            self.sentences[seq] = SentenceState(
                Sentence(self.session_id, self.turn, seq, text, self.voice, self.sample_rate)
            )
            self.queue.append(seq)
        return self._dispatch_more()

    def _dispatch_more(self) -> list[Out]:
        outs: list[Out] = []
        in_flight, coming, now, wait = 0, 0.0, self.playback.now, None
        silent_since: float | None = None  # the earliest sentence in synthesis with no audio yet
        for seq in self.queue:
            st = self.sentences[seq]
            if not st.dispatched:
                heard_until = self.playback.played_by(now)
                at = next_dispatch(self.lookahead, in_flight, coming, heard_until, now, silent_since)
                if at is None or at > now:
                    wait = at
                    break
                st.dispatched, st.dispatched_at = True, now
                outs.append(Dispatch(st.sentence))
            in_flight += not st.done
            if silent_since is None and not st.done and not st.heard_from:
                silent_since = st.dispatched_at
            coming += self._coming_s(st)
        if wait != self.dispatch_at:
            self.dispatch_moved = True
            self._set_dispatch_at(wait)
        return outs

    def _set_dispatch_at(self, at: float | None) -> None:
        self.dispatch_at = at
        if self.dispatch_times is None:
            return
        if at is None:
            self.dispatch_times.drop(self.session_id)
        else:
            self.dispatch_times.expire_at(self.session_id, at)

    def waiting(self, now: float) -> Sentence | None:
        """The next sentence not dispatched yet, with its playback need (core/playback.py)."""
        for st in (self.sentences[seq] for seq in self.queue if not self.sentences[seq].dispatched):
            need_at = self.playback.need_at(self.audio_ahead_s(st.sentence.seq), now)
            return replace(st.sentence, need_at=need_at)
        return None

    def wake(self, now: float) -> list[Out]:
        """``dispatch_at`` came: dispatch what the lookahead lets go now."""
        self.playback.seen(now)
        return self._dispatch_more()

    def _coming_s(self, st: SentenceState) -> float:  # audio it is still expected to bring
        sent_s = st.samples / self.sample_rate if self.sample_rate else 0.0
        return max(0.0, expected_audio_s(st.sentence.text) - sent_s)

    def audio_ahead_s(self, seq: int) -> float:
        """Audio still to be sent before sentence ``seq`` (each one's expected, less what it sent)."""
        return sum(self._coming_s(self.sentences[ahead]) for ahead in self.queue if ahead < seq)

    def cancel(self) -> list[Out]:
        """Barge-in: drop everything queued or playing; the session stays usable."""
        turn = self.turn
        self.sentences.clear()
        self.queue.clear()
        self._segmenter = self._new_segmenter()
        self.turn_of_flush = None
        self.turn += 1
        self._set_dispatch_at(None)
        return [CancelJobs(self.session_id), Emit(Cancelled(turn))]

    def restart_sentences(self, seqs: tuple[int, ...]) -> None:
        """These sentences' jobs were stopped before they played (the session was detached): the
        audio they had made is dropped, as they will be made again."""
        for seq in seqs:
            st = self.sentences.get(seq)
            if st is not None and not st.started and not st.done:
                st.chunks.clear()

    # ---- engine results -------------------------------------------------------------------

    def audio(self, seq: int, engine: str, pcm: bytes | list[bytes], cached: bool = False) -> list[Out]:
        st = self.sentences.get(seq)
        if st is None or st.done:
            return []  # cancelled, or a late chunk
        st.engine, st.cached, st.heard_from = engine, cached, True
        st.chunks += [pcm] if isinstance(pcm, bytes) else pcm  # a list: a cached sentence's frames
        return self._advance()

    def fell_back(self, seq: int, from_engine: str, to_engine: str, reason: str) -> list[Out]:
        st = self.sentences.get(seq)
        if st is None:
            return []
        # Audio of the failed attempt not yet sent is dropped; if some was sent, the client is told
        # to drop what it has not played: the sentence starts again from its beginning.
        st.chunks.clear()
        if st.started:
            st.restart_pending = True
        return [Emit(Fallback(seq, reason, from_engine, to_engine))]

    def sentence_done(self, seq: int) -> list[Out]:
        st = self.sentences.get(seq)
        if st is None:
            return []
        st.done = True
        return self._advance()

    def sentence_failed(self, seq: int, code: str, message: str) -> list[Out]:
        """No voice could speak it: the client gets the text with an error, never silence."""
        st = self.sentences.get(seq)
        if st is None:
            return []
        st.chunks.clear()
        st.done = True
        st.error = Error(code, message, seq=seq, text=st.sentence.text)
        return self._advance()

    def _advance(self) -> list[Out]:
        """Send what the head of the queue has; move on as sentences end."""
        outs: list[Out] = []
        while self.queue:
            st = self.sentences[self.queue[0]]
            if st.error is not None:
                outs.append(Emit(st.error))
            else:
                if st.chunks and (not st.started or st.restart_pending):
                    s, restart = st.sentence, st.restart_pending
                    outs.append(
                        Emit(SentenceStart(s.seq, s.turn, s.text, st.engine, st.cached, restart=restart))
                    )
                    if st.restart_pending:
                        st.sent_index, st.samples, st.restart_pending = 0, 0, False
                    st.started = True
                if self.format == "pcm16":
                    outs += self._send_chunks(st)
                if not st.done:
                    break
                if self.format != "pcm16":
                    outs += self._send_encoded(st)
                if st.started:
                    outs.append(Emit(SentenceEnd(st.sentence.seq, st.samples)))
            self.queue.popleft()
            del self.sentences[st.sentence.seq]
        outs += self._dispatch_more()
        if not self.queue and self.turn_of_flush == self.turn:
            outs += [Emit(TurnEnd(self.turn)), TurnOver(self.session_id, self.turn)]
            self.turn += 1
            self.turn_of_flush = None
        return outs

    def _send_chunks(self, st: SentenceState) -> list[Out]:
        outs: list[Out] = []
        for pcm in st.chunks:
            frame = pcm16_frame(st.sentence.seq, st.sent_index, self.sample_rate, pcm)
            seconds = len(pcm) / 2 / self.sample_rate
            outs.append(EmitAudio(frame, st.sentence.seq, seconds))
            self.playback.emitting_s += seconds  # the clock hears of it once sent
            st.sent_index += 1
            st.samples += len(pcm) // 2
        st.chunks.clear()
        return outs

    def _send_encoded(self, st: SentenceState) -> list[Out]:
        if not st.chunks:
            return []
        pcm = b"".join(st.chunks)
        st.chunks.clear()
        st.samples = len(pcm) // 2
        return [EncodeAudio(st.sentence.seq, self.sample_rate, self.format, pcm)]
