"""The time-stretch behind OpenAI's ``speed`` (WSOLA, numpy): exact duration, same pitch, no GPL."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from broker.errors import ProtocolError
from stream_server.audio_out.stretch import time_stretch

RATE = 24_000
REPO = Path(__file__).resolve().parents[2]
SPEEDS = [0.25, 0.5, 0.8, 1.25, 1.5, 2.0, 3.0, 4.0]


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def voice(seconds: float, f0: float) -> np.ndarray:
    """A buzzy vowel: harmonics of f0 with a falling spectrum, and a syllable rhythm."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    return (0.2 * x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * RATE / len(x))


def f0_hz(x: np.ndarray) -> float:
    """The strongest autocorrelation period between 60 and 400 Hz."""
    x = x - x.mean()
    ac = np.correlate(x, x, mode="full")[len(x) - 1 :]
    lo, hi = RATE // 400, RATE // 60
    return RATE / (lo + int(np.argmax(ac[lo:hi])))


@pytest.mark.parametrize("speed", SPEEDS)
def test_duration_is_exact_and_pitch_is_kept(speed: float) -> None:
    x = tone(2.0, hz=300.0)
    y = time_stretch(x, RATE, speed)
    assert y.dtype == np.float32
    assert len(y) == round(len(x) / speed)
    middle = y[len(y) // 4 : 3 * len(y) // 4]
    assert dominant_hz(middle) == pytest.approx(300, abs=5)
    assert np.max(np.abs(y)) == pytest.approx(0.3, rel=0.1)  # no gain change, no clipping


@pytest.mark.parametrize("speed", [0.5, 2.0])
@pytest.mark.parametrize("f0", [90.0, 210.0])
def test_a_voice_keeps_its_pitch(speed: float, f0: float) -> None:
    x = voice(1.5, f0)
    y = time_stretch(x, RATE, speed)
    window = y[len(y) // 3 : len(y) // 3 + RATE // 10]
    assert f0_hz(window) == pytest.approx(f0, rel=0.03)


def test_speed_one_and_empty_input_pass_through() -> None:
    x = tone(0.1, 200.0)
    assert np.array_equal(time_stretch(x, RATE, 1.0), x)
    assert len(time_stretch(np.zeros(0, dtype=np.float32), RATE, 2.0)) == 0


@pytest.mark.parametrize("n", [1, 7, 300, 1000])
def test_very_short_input_gives_the_exact_length(n: int) -> None:
    x = np.full(n, 0.1, dtype=np.float32)
    for speed in (0.25, 4.0):
        y = time_stretch(x, RATE, speed)
        assert len(y) == max(1, round(n / speed))
        assert np.all(np.isfinite(y))


def test_silence_stays_silent() -> None:
    assert not np.any(time_stretch(np.zeros(RATE, dtype=np.float32), RATE, 1.7))


@pytest.mark.parametrize("speed", [0.0, 0.2, 4.5, -1.0])
def test_speed_out_of_range_is_refused(speed: float) -> None:
    with pytest.raises(ProtocolError) as info:
        time_stretch(tone(0.1, 200.0), RATE, speed)
    assert info.value.code == "bad_speed"


def test_the_gateway_never_loads_gpl_code_for_speed() -> None:
    # the openai route and the stretch it calls, in a fresh interpreter: neither pedalboard (Rubber
    # Band, GPL-3.0) nor piper is loaded
    code = (
        "import sys, numpy as np\n"
        "import stream_server.http.openai_api\n"
        "from stream_server.audio_out.stretch import time_stretch\n"
        "time_stretch(np.ones(24000, dtype=np.float32), 24000, 2.0)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pedalboard', 'piper')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    imports = re.compile(r"^\s*(import|from)\s+(pedalboard|piper)\b", re.MULTILINE)
    assert [p for p in (REPO / "stream_server").rglob("*.py") if imports.search(p.read_text())] == []
