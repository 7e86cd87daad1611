"""Binary audio frames and the sample helpers every engine uses."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.audio import (
    HEADER_SIZE,
    MAX_FRAME_BYTES,
    AudioFrame,
    Encoding,
    chunk_samples,
    from_pcm16,
    normalize_loudness,
    resample,
    rms_dbfs,
    to_pcm16,
)
from broker.errors import ProtocolError


@given(
    seq=st.integers(0, 2**32 - 1),
    index=st.integers(0, 2**32 - 1),
    rate=st.integers(1000, 192_000),
    payload=st.binary(max_size=2000).map(lambda b: b[: len(b) - len(b) % 2]),
    encoding=st.sampled_from(list(Encoding)),
)
def test_frames_round_trip(seq: int, index: int, rate: int, payload: bytes, encoding: Encoding) -> None:
    frame = AudioFrame(seq=seq, index=index, sample_rate=rate, payload=payload, encoding=encoding)
    data = frame.to_bytes()
    assert len(data) == HEADER_SIZE + len(payload)
    assert AudioFrame.from_bytes(data) == frame


def _header(magic: bytes = b"SV", version: int = 1, encoding: int = 0, rate: int = 24_000) -> bytes:
    return struct.pack("<2sBBIII", magic, version, encoding, 0, 0, rate)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"SV\x01",
        _header(magic=b"XX"),
        _header(version=2),
        _header(encoding=9),
        _header(rate=10),
        _header(rate=1_000_000),
        _header() + b"\x00",  # odd pcm16 payload
        _header() + b"\x00" * MAX_FRAME_BYTES,
    ],
)
def test_bad_frames_raise_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        AudioFrame.from_bytes(data)
    assert info.value.code == "bad_audio_frame"


def test_pcm16_round_trip_and_clipping() -> None:
    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0], dtype=np.float32)
    y = from_pcm16(to_pcm16(x))
    assert np.allclose(y, np.clip(x, -1, 1), atol=1e-4)


def test_resample_22050_to_24000_keeps_duration_and_pitch() -> None:
    t = np.arange(22_050) / 22_050
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    out = resample(tone, 22_050, 24_000)
    assert len(out) == 24_000 and out.dtype == np.float32
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * 24_000 / len(out)
    assert abs(peak_hz - 440) < 2


def test_chunks_cover_every_sample() -> None:
    x = np.arange(1000, dtype=np.float32)
    chunks = chunk_samples(x, 24_000, 40)
    assert [len(c) for c in chunks] == [960, 40]
    assert np.array_equal(np.concatenate(chunks), x)


def test_normalize_loudness_targets_minus_20_dbfs_and_leaves_silence() -> None:
    quiet = (0.01 * np.sin(np.linspace(0, 100, 24_000))).astype(np.float32)
    assert rms_dbfs(normalize_loudness(quiet)) == pytest.approx(-20.0, abs=0.1)
    silence = np.zeros(1000, dtype=np.float32)
    assert np.array_equal(normalize_loudness(silence), silence)
    loud = np.ones(100, dtype=np.float32) * 0.9
    assert np.max(np.abs(normalize_loudness(loud))) <= 0.99
