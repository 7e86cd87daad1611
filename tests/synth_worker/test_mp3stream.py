"""Incremental MP3 decoding: the pieces add up to exactly the whole-stream decode."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from broker.errors import EngineError
from synth_worker.mp3stream import Mp3StreamDecoder, frame_length
from tests.cloud.speech import speech_mp3

TEXT = "Decoding while the bytes arrive."


def whole(data: bytes) -> np.ndarray:
    samples, _ = sf.read(io.BytesIO(data), dtype="float32")
    return np.asarray(samples)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_decode_equals_whole_decode(seed: int) -> None:
    mp3 = speech_mp3(TEXT)
    rng = np.random.default_rng(seed)
    decoder = Mp3StreamDecoder(step_bytes=1024)
    out, decodes, i = [], 0, 0
    while i < len(mp3):
        n = int(rng.integers(1, 900))
        decoder.push(mp3[i : i + n])
        i += n
        if decoder.due:
            out.append(decoder.decode())
            decodes += 1
    out.append(decoder.finish())
    assert decodes >= 3  # audio came out before the end of the stream
    assert sum(len(o) for o in out[:-1]) > 0
    np.testing.assert_array_equal(np.concatenate(out), whole(mp3))
    assert decoder.sample_rate == 24_000


def test_frame_header_parsing() -> None:
    mp3 = speech_mp3(TEXT)
    assert frame_length(mp3[:4]) == (144, 576)  # MPEG-2 layer III, 48 kbit/s, 24 kHz: 72 * 48000 / 24000
    assert frame_length(b"\xff\xfb\x90\x64") == (417, 1152)  # MPEG-1, 128 kbit/s, 44.1 kHz
    assert frame_length(b"ID3\x04") is None
    assert frame_length(b"\xff\xf3") is None


def test_id3_tag_is_skipped() -> None:
    mp3 = speech_mp3(TEXT)
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x05" + b"\x00" * 5
    decoder = Mp3StreamDecoder(step_bytes=512)
    decoder.push(tag + mp3[:2000])
    assert decoder.due


def test_garbage_is_decoded_only_at_the_end_and_then_rejected() -> None:
    decoder = Mp3StreamDecoder()
    decoder.push(b"<html>not audio</html>" * 200)
    assert not decoder.due
    with pytest.raises(EngineError) as caught:
        decoder.finish()
    assert caught.value.code == "bad_audio"
