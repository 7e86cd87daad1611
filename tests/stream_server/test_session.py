"""The session core: order, turns, cancel, restart and refusal rules. Synchronous, no I/O."""

from __future__ import annotations

import pytest

from broker.audio import AudioFrame
from broker.errors import ProtocolError
from broker.ws_protocol import (
    MAX_PENDING_CHARS,
    Cancelled,
    CancelTurn,
    Error,
    Fallback,
    Flush,
    SentenceEnd,
    SentenceStart,
    Speak,
    Start,
    Text,
    TurnEnd,
)
from stream_server.audio_out.encode import encoded_frame
from stream_server.core.session import SessionCore, TokenBucket
from stream_server.core.session_outs import CancelJobs, Dispatch, Emit, EmitAudio, EncodeAudio, TurnOver

PCM = b"\x01\x00" * 480  # 20 ms at 24 kHz


def core(**kw: object) -> SessionCore:
    return SessionCore("sess1", voice="maya", **kw)  # type: ignore[arg-type]


def dispatched(outs: list[object]) -> list[int]:
    return [o.sentence.seq for o in outs if isinstance(o, Dispatch)]


def messages(outs: list[object]) -> list[object]:
    return [o.message for o in outs if isinstance(o, Emit)]


def frames(outs: list[object]) -> list[AudioFrame]:
    return [AudioFrame.from_bytes(o.frame) for o in outs if isinstance(o, EmitAudio)]


def test_sentences_are_dispatched_as_they_become_certain() -> None:
    c = core()
    assert dispatched(c.receive(Text("Hello there. How "), 0.0)) == [0]  # a whole word after the stop
    c.audio(0, "bark", PCM)  # its first audio, sent: the next go as they come (first audio first)
    c.playback.sent(0.02, 0.0)
    assert dispatched(c.receive(Text("are you? Fine "), 0.0)) == [1]
    assert dispatched(c.receive(Flush(), 0.0)) == [2]


def test_audio_reaches_the_client_strictly_in_order() -> None:
    c = core()
    c.receive(Speak("One. Two. Three."), 0.0)
    assert c.audio(1, "bark", PCM) == []  # seq 1 waits for seq 0
    assert c.sentence_done(1) == []
    outs = c.audio(0, "bark", PCM)
    assert [type(m) for m in messages(outs)] == [SentenceStart]
    assert [f.seq for f in frames(outs)] == [0]
    outs = c.sentence_done(0)
    kinds = [type(m).__name__ for m in messages(outs)]
    assert kinds == ["SentenceEnd", "SentenceStart", "SentenceEnd"]
    assert [f.seq for f in frames(outs)] == [1]
    outs = c.audio(2, "bark", PCM) + c.sentence_done(2)
    assert isinstance(messages(outs)[-1], TurnEnd)
    assert any(isinstance(o, TurnOver) for o in outs)


def test_sentence_end_counts_samples_and_frames_are_numbered() -> None:
    c = core()
    c.receive(Speak("Only one."), 0.0)
    outs = c.audio(0, "bark", PCM) + c.audio(0, "bark", PCM) + c.sentence_done(0)
    assert [f.index for f in frames(outs)] == [0, 1]
    end = next(m for m in messages(outs) if isinstance(m, SentenceEnd))
    assert end.samples == 2 * len(PCM) // 2


def test_lookahead_bounds_the_sentences_in_flight() -> None:
    c = core(lookahead=2)
    outs = c.receive(Speak("A one. B two. C three. D four."), 0.0)
    assert dispatched(outs) == [0]  # the next waits for its first audio (first audio first)
    assert dispatched(c.audio(0, "bark", PCM)) == [1]  # two in flight: the bound
    assert dispatched(c.sentence_done(0)) == [2]


def test_failed_sentence_sends_its_text_and_the_turn_goes_on() -> None:
    c = core()
    c.receive(Speak("Lost one. Kept one."), 0.0)
    c.audio(1, "espeak-ng", PCM)
    c.sentence_done(1)
    outs = c.sentence_failed(0, "speech_unavailable", "no voice")
    errs = [m for m in messages(outs) if isinstance(m, Error)]
    assert errs and errs[0].text == "Lost one." and errs[0].seq == 0
    assert [f.seq for f in frames(outs)] == [1]
    assert isinstance(messages(outs)[-1], TurnEnd)


def test_fallback_mid_sentence_restarts_the_sentence() -> None:
    c = core()
    c.receive(Speak("Long sentence here."), 0.0)
    c.audio(0, "bark", PCM)
    outs = c.fell_back(0, "bark", "espeak-ng", "worker_dead")
    assert isinstance(messages(outs)[0], Fallback)
    outs = c.audio(0, "espeak-ng", PCM)
    start = messages(outs)[0]
    assert isinstance(start, SentenceStart) and start.restart and start.engine == "espeak-ng"
    assert frames(outs)[0].index == 0


def test_cancel_drops_everything_and_the_session_stays_usable() -> None:
    c = core()
    c.receive(Speak("One. Two."), 0.0)
    outs = c.receive(CancelTurn(), 0.0)
    assert any(isinstance(o, CancelJobs) for o in outs)
    assert any(isinstance(m, Cancelled) for m in messages(outs))
    assert c.audio(0, "bark", PCM) == []  # late audio of the cancelled turn
    outs = c.receive(Speak("Again."), 0.0)
    [d] = [o for o in outs if isinstance(o, Dispatch)]
    assert d.sentence.seq == 2 and d.sentence.turn == 1


def test_empty_flush_ends_the_turn_at_once() -> None:
    outs = core().receive(Flush(), 0.0)
    assert isinstance(messages(outs)[0], TurnEnd)


def test_start_after_text_is_refused() -> None:
    c = core()
    c.receive(Text("Hello. "), 0.0)
    with pytest.raises(ProtocolError) as err:
        c.receive(Start(), 0.0)
    assert err.value.code == "bad_state"


def test_text_backlog_is_bounded() -> None:
    c = core(lookahead=1)
    c.receive(Text("a" * 9000), 0.0)
    with pytest.raises(ProtocolError) as err:
        for _ in range(MAX_PENDING_CHARS // 9000 + 2):
            c.receive(Text("b" * 9000), 0.0)
    assert err.value.code == "text_backlog_full"


def test_floods_are_rate_limited_and_recover() -> None:
    c = core(flood=TokenBucket(rate=10.0, burst=5.0))
    for _ in range(5):
        c.receive(Text("x"), 0.0)
    with pytest.raises(ProtocolError) as err:
        c.receive(Text("x"), 0.0)
    assert err.value.code == "rate_limited"
    c.receive(Text("x"), 1.0)  # refilled


def test_encoded_formats_send_one_frame_per_sentence() -> None:
    c = core(fmt="wav")
    c.receive(Speak("Encoded."), 0.0)
    outs = c.audio(0, "bark", PCM) + c.audio(0, "bark", PCM) + c.sentence_done(0)
    # The core does not encode (that runs off the event loop, in the hub): it hands the whole
    # sentence over, in its place among the outputs.
    [encode] = [o for o in outs if isinstance(o, EncodeAudio)]
    assert (encode.seq, encode.fmt, encode.pcm) == (0, "wav", PCM + PCM)
    frame = AudioFrame.from_bytes(encoded_frame(encode.seq, encode.sample_rate, encode.fmt, encode.pcm))
    assert frame.payload[:4] == b"RIFF"
