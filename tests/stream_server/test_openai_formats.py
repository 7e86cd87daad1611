"""The pure audio pieces of POST /v1/audio/speech: streaming encoders, SSE framing.

Speed (the time-stretch) is tested in test_stretch.py."""

from __future__ import annotations

import base64
import io
import json

import av
import numpy as np
import pytest
import soundfile as sf

from broker.errors import ProtocolError
from stream_server.audio_out.formats import (
    SPEECH_FORMATS,
    SpeechUsage,
    sse_audio_delta,
    sse_audio_done,
    stream_encoder,
    wav_stream_header,
)

RATE = 24_000


def tone(seconds: float, hz: float = 220.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    return np.concatenate(frames).astype(np.float32), rate


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


@pytest.mark.parametrize("fmt", [f for f in SPEECH_FORMATS if f != "pcm"])
def test_every_format_decodes_to_the_audio_and_all_but_flac_stream(fmt: str) -> None:
    x = tone(2.0)
    enc = stream_encoder(fmt, RATE)
    parts = [enc.encode(x[i : i + 960]) for i in range(0, len(x), 960)]
    tail = enc.finish()
    early = sum(len(p) for p in parts[: len(parts) // 2])
    assert (early == 0) if fmt == "flac" else (early > 0), "streamed formats must not wait for the end"
    if fmt in ("wav", "flac"):  # libsndfile (soundfile) reads them, a common reader in Python
        back, back_rate = sf.read(io.BytesIO(b"".join(parts) + tail), dtype="float32")
        assert back_rate == RATE and len(back) == len(x)
    audio, rate = decode(b"".join(parts) + tail)
    seconds = len(audio) / rate
    assert seconds == pytest.approx(2.0, abs=0.12)
    assert dominant_hz(audio[:rate], rate) == pytest.approx(220, abs=10)


def test_pcm_is_raw_pcm16() -> None:
    x = tone(0.5)
    enc = stream_encoder("pcm", RATE)
    data = enc.encode(x) + enc.finish()
    assert len(data) == 2 * len(x)
    back = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767
    assert np.max(np.abs(back - x)) < 1e-3


def test_wav_header_says_unknown_length_and_the_stream_reads() -> None:
    head = wav_stream_header(RATE)
    assert head[:4] == b"RIFF" and head[8:16] == b"WAVEfmt " and len(head) == 44
    assert head[4:8] == b"\xff\xff\xff\xff" and head[40:44] == b"\xff\xff\xff\xff"
    enc = stream_encoder("wav", RATE)
    data = enc.encode(tone(0.5)) + enc.encode(tone(0.5)) + enc.finish()
    assert data.count(b"RIFF") == 1
    assert len(data) == 44 + 2 * RATE


def test_unknown_format_and_bad_opus_rate_are_typed_errors() -> None:
    with pytest.raises(ProtocolError) as info:
        stream_encoder("ogg", RATE)
    assert info.value.code == "bad_response_format"
    with pytest.raises(ProtocolError) as info:
        stream_encoder("opus", 22050)
    assert info.value.code == "bad_sample_rate"


def test_sse_events_have_openais_shape() -> None:
    delta = sse_audio_delta(b"\x00\x01abc")
    assert delta.startswith(b"data: ") and delta.endswith(b"\n\n")
    event = json.loads(delta[6:])
    assert event == {"type": "speech.audio.delta", "audio": base64.b64encode(b"\x00\x01abc").decode()}
    done = json.loads(sse_audio_done(SpeechUsage(12, 30))[6:])
    assert done == {
        "type": "speech.audio.done",
        "usage": {"input_tokens": 12, "output_tokens": 30, "total_tokens": 42},
    }
