"""Whole-sentence encoding for sessions and HTTP that asked for a container format (libsndfile)."""

from __future__ import annotations

import io

import numpy as np

from broker.audio import AudioFrame, Encoding, from_pcm16

ENCODINGS = {
    "pcm16": Encoding.PCM16,
    "wav": Encoding.WAV,
    "flac": Encoding.FLAC,
    "ogg": Encoding.OPUS,
    "mp3": Encoding.MP3,
}


SOUNDFILE_FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "OPUS"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
}


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode a whole sentence in memory with libsndfile (bundled with soundfile)."""
    import soundfile as sf

    container, subtype = SOUNDFILE_FORMATS[fmt]
    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, format=container, subtype=subtype)
    return buf.getvalue()


def encoded_frame(seq: int, sample_rate: int, fmt: str, pcm: bytes) -> bytes:
    """A sentence's PCM16 as one binary frame holding the whole encoded file (docs/protocol.md)."""
    payload = encode_audio(np.asarray(from_pcm16(pcm)), sample_rate, fmt)
    return AudioFrame(seq, 0, sample_rate, payload, ENCODINGS[fmt]).to_bytes()
