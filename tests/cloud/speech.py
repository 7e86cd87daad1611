"""Real speech for the stand-in servers: espeak-ng, rendered once per (text, voice) and cached."""

from __future__ import annotations

import functools
import io
import shutil
import struct
import subprocess

import numpy as np
import soundfile as sf

from broker.audio import Samples, resample, to_pcm16

ESPEAK = shutil.which("espeak-ng") or "/usr/bin/espeak-ng"


@functools.lru_cache(maxsize=64)
def _espeak(text: str, voice: str) -> tuple[bytes, int]:
    wav = subprocess.run(
        [ESPEAK, "-v", voice, "--stdout", text], capture_output=True, check=True, timeout=30
    ).stdout
    # espeak-ng writes a streaming WAV header (sizes 0x7fff...): read fmt and data by hand.
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise RuntimeError("espeak-ng did not write a WAV")
    pos, rate = 12, 0
    while pos + 8 <= len(wav):
        tag, size = wav[pos : pos + 4], struct.unpack("<I", wav[pos + 4 : pos + 8])[0]
        if tag == b"fmt ":
            rate = struct.unpack("<I", wav[pos + 12 : pos + 16])[0]
        elif tag == b"data":
            data = wav[pos + 8 :]
            return data[: len(data) // 2 * 2], rate
        pos += 8 + size
    raise RuntimeError("espeak-ng WAV has no data chunk")


def speech(text: str, rate: int, voice: str = "en-us") -> Samples:
    """float32 mono speech at ``rate``."""
    pcm, src_rate = _espeak(text, voice)
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32767.0
    return resample(samples, src_rate, rate)


def speech_pcm16(text: str, rate: int, voice: str = "en-us") -> bytes:
    return to_pcm16(speech(text, rate, voice))


@functools.lru_cache(maxsize=64)
def speech_mp3(text: str, voice: str = "en-us") -> bytes:
    """audio-24khz-48kbitrate-mono-mp3, what the edge service sends: CBR, no Xing/Info header."""
    out = io.BytesIO()
    out.name = "speech.mp3"
    sf.write(
        out,
        speech(text, 24_000, voice),
        24_000,
        format="MP3",
        subtype="MPEG_LAYER_III",
        bitrate_mode="CONSTANT",
        compression_level=0.75,  # libsndfile/LAME: 48 kbit/s at 24 kHz
    )
    return out.getvalue()
