# SPDX-License-Identifier: GPL-3.0-or-later
"""The Piper child process: the only code of sesame-voice that imports ``piper`` (piper-tts, GPL).

    python -m synth_worker.piper_child --model VOICE.onnx [--config VOICE.onnx.json] [--threads N]
                                       [--shared-threads M --busy-lock PATH]

This file is distributed under the GPL-3.0-or-later, as piper-tts is. It is a program of its own:
the worker and the gateway start it as a child process and talk to it over its stdin and stdout,
the same arm's-length boundary the project keeps with espeak-ng. Nothing else imports it.

stdin: one JSON object per line, ``{"op": "say", "id": N, "text": "...", "urgent": bool, "need_s": S}``
or ``{"op": "cancel", "id": N}`` (optional: ``urgent``, its listener needs the first audio now, so
every core when alone; ``need_s``, the seconds until it needs it, 0 when not said).

stdout: frames of a 9-byte header ``<cII`` (kind, id, payload length) and the payload:

    R  id 0   ready: JSON {"sample_rate": int, "load_s": float, "rms_dbfs": float, "peak": float}, once
              the model is loaded and warm; rms_dbfs and peak are those of a calibration sentence
    A  id N   audio: PCM16 little-endian mono at the voice's sample rate: the next piece of the text,
              as the model makes it (no per-clause normalization: the parent applies one gain per voice)
    D  id N   done: every sentence of request N was written
    C  id N   cancelled: request N stopped (before it started, or between two sentences)
    X  id N   error: UTF-8 message (id 0: the model could not be loaded; the child then exits 1)

Requests are spoken one at a time, in order; a cancel is read while another request speaks.

Threads (``synth_worker.piper_threads``): with ``--shared-threads M`` other than N, the model is
loaded twice, with N and with M intra-op threads, and each clause asks ``--busy-lock`` (a file all
Piper children of the machine share) whether another child is speaking right now: alone, it runs
on N threads, else on M.

Clauses: each sentence's phonemes are cut after a clause mark (``, ; :``) and each clause goes
through the model alone, so the first audio of a long sentence waits only for its first clause.
The model starts and ends every clause in silence, so clauses join without a click; left raw (not
peak-normalized per clause, as piper does per sentence), the level does not jump at the joins.

Streaming (``synth_worker.piper_graph``): the model is cut once at load into "phoneme ids -> latent"
and the decoder "latent -> audio"; a clause that would not be decoded in one piece before its
listener needs it (``need_s``, then the audio sent before it) is decoded in pieces sized to the
decoder's speed now (``synth_worker.piper_pace``), each with the decoder's overlap of context
either side, so they join into the audio one pass would make (within float rounding). A voice
whose graph has another shape is spoken a clause per pass, the reason written to stderr.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import queue
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from synth_worker.piper_graph import LatentDecoder, NoCut, Playback, SplitGraph, split

HEADER = struct.Struct("<cII")
CLAUSE_MARKS = frozenset(",;:")
Say = tuple[int, str, bool, float]  # a say request: id, text, urgent, when (perf_counter) it is needed
CALIBRATION = "The quick brown fox jumps over the lazy dog, and then it rests in the shade."


class Output:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def frame(self, kind: bytes, rid: int, payload: bytes = b"") -> None:
        with self.lock:
            self.stream.write(HEADER.pack(kind, rid, len(payload)) + payload)
            self.stream.flush()


class BusyLock:
    """Whether this child may speak on every core: no other Piper child of the machine speaking
    (one shared file: a speaking child holds a shared lock on it; one that can take the exclusive
    lock for a moment is alone; a child that dies releases its lock with its file descriptors)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.held = False

    def speak(self) -> bool:
        """Mark this child speaking (until ``quiet``); True when it may use every core."""
        try:  # dropping our shared lock first is how flock converts: it may not keep it on failure
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            alone = False
        fcntl.flock(self.fd, fcntl.LOCK_SH)  # waits only while another child holds it exclusively
        self.held = True
        return alone

    def quiet(self) -> None:
        if self.held:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            self.held = False


class Speaker:
    """One copy of the voice, on one thread count: piper's phonemes and ids, and the model cut in
    two where it can be (``synth_worker.piper_graph``: the decoder's audio streams) or whole.
    Where cut, ``voice.session`` is the first part (ids -> latent): piper's own ``synthesize`` is
    never run on it."""

    def __init__(self, voice: Any, decoder: LatentDecoder | None = None) -> None:
        self.voice, self.decoder = voice, decoder

    def audio(self, phonemes: list[str], playback: Playback | None = None) -> Iterator[Any]:
        """One clause through the model: float32 samples, not normalized; in pieces sized to the
        audio the listener has left (``playback``; ``synth_worker.piper_pace``), else in one."""
        import numpy as np

        if self.decoder is None:
            yield raw_audio(self.voice, phonemes)
            return
        ids = self.voice.phonemes_to_ids(phonemes)
        c = self.voice.config
        wall, cpu = time.perf_counter(), time.process_time()
        latent = self.voice.session.run(
            None,
            {
                "input": np.array([ids], dtype=np.int64),
                "input_lengths": np.array([len(ids)], dtype=np.int64),
                "scales": np.array([c.noise_scale, c.length_scale, c.noise_w_scale], dtype=np.float32),
            },
        )[0]
        if playback is not None:
            yield from self.decoder.paced(
                latent, time.process_time() - cpu, time.perf_counter() - wall, playback
            )
        else:
            yield self.decoder.whole(latent)


class Voices:
    """The voice on ``alone`` threads, and on ``shared`` threads where those differ (with the lock
    that chooses between them per clause)."""

    def __init__(self, alone: Speaker, shared: Speaker | None = None, busy: BusyLock | None = None) -> None:
        self.alone, self.shared, self.busy = alone, shared, busy

    def pick(self) -> tuple[Speaker, bool]:
        """The copy to speak the next clause on, and whether this child speaks alone (without a
        lock, a fixed thread count: taken as alone)."""
        if self.shared is None or self.busy is None:
            return self.alone, True
        return (self.alone, True) if self.busy.speak() else (self.shared, False)

    def quiet(self) -> None:
        if self.busy is not None:
            self.busy.quiet()


def load_voices(model: str, config: str | None, threads: int, shared: int | None, lock: str | None) -> Voices:
    """The model on ``threads`` threads, and on ``shared`` beside the busy lock where asked. Without
    the lock (a file that cannot be opened) the child keeps to its share: fair, never oversubscribed."""
    graph = model_graph(model)
    if shared is None or shared == threads or not lock:
        return Voices(load_voice(model, config, threads, graph))
    try:
        busy = BusyLock(lock)
    except OSError as exc:
        print(f"busy lock {lock}: {exc}; speaking on {shared} thread(s) only", file=sys.stderr)
        return Voices(load_voice(model, config, shared, graph))
    beside = load_voice(model, config, shared, graph)
    calibrate(beside)  # onnxruntime's first run of the second copy, too
    return Voices(load_voice(model, config, threads, graph), beside, busy)


def model_graph(model: str) -> SplitGraph | NoCut:
    """The voice's graph cut in two (``synth_worker.piper_graph``), or why not: then said on
    stderr (the parent logs it) and each clause is spoken in one pass."""
    import onnx

    try:
        graph = split(onnx.load(model))
    except Exception as exc:  # not a graph onnx can read: onnxruntime's load will say why
        graph = NoCut(f"{type(exc).__name__}: {exc}")
    if isinstance(graph, NoCut):
        print(f"{model}: audio not streamed, each clause in one pass: {graph.reason}", file=sys.stderr)
    return graph


def read_requests(stdin: BinaryIO, work: queue.Queue[Say | None], cancelled: set[int]) -> None:
    """Reader thread: say -> the work queue; cancel -> the cancelled set; EOF -> None (stop)."""
    for raw in stdin:
        try:
            msg = json.loads(raw)
            rid = int(msg["id"])
            if msg["op"] == "cancel":
                cancelled.add(rid)
            elif msg["op"] == "say":
                need = min(60.0, max(0.0, float(msg.get("need_s") or 0.0)))  # when its audio is needed
                work.put((rid, str(msg["text"]), msg.get("urgent") is True, time.perf_counter() + need))
        except (ValueError, KeyError, TypeError):
            continue  # the parent writes these lines; a bad one is dropped, the next is read
    work.put(None)


def load_voice(
    model: str, config: str | None, threads: int, graph: SplitGraph | NoCut, spin: bool = False
) -> Speaker:
    """The voice with ``threads`` intra-op threads: its two parts where ``graph`` is cut, else
    the whole model (``spin``: only for ``bench/piper_clauses.py``'s comparison)."""
    from piper import PiperVoice
    from piper.config import PiperConfig

    with open(config or f"{model}.json", encoding="utf-8") as f:
        piper_config = PiperConfig.from_dict(json.load(f))
    if isinstance(graph, NoCut):
        return Speaker(PiperVoice(session=session(model, threads, spin), config=piper_config))
    voice = PiperVoice(session=session(graph.encoder, threads, spin), config=piper_config)
    rate = int(piper_config.sample_rate)
    return Speaker(voice, LatentDecoder(session(graph.decoder, threads, spin), graph.cut, rate))


def session(model: str | bytes, threads: int, spin: bool = False) -> Any:
    """An onnxruntime session with ``threads`` intra-op threads (0: onnxruntime's default, one per
    core). The threads sleep when idle instead of spinning: a worker shares its cores with others
    (``synth_worker.piper_threads``)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def clauses(phonemes: list[str]) -> list[list[str]]:
    """A sentence's phonemes cut after each clause mark (the mark stays with its clause)."""
    out: list[list[str]] = [[]]
    for phoneme in phonemes:
        if not out[-1] and phoneme.isspace():
            continue  # a clause does not start with the space after the mark
        out[-1].append(phoneme)
        if phoneme in CLAUSE_MARKS:
            out.append([])
    return [c for c in out if any(p.isalpha() for p in c)]  # a lone mark is not a clause


def raw_audio(voice: Any, phonemes: list[str]) -> Any:
    """One clause through the model: float32 samples, not normalized."""
    import numpy as np
    from piper import SynthesisConfig

    ids = voice.phonemes_to_ids(phonemes)
    audio = voice.phoneme_ids_to_audio(ids, SynthesisConfig(normalize_audio=False))
    return np.asarray(audio, dtype=np.float32).reshape(-1)


def pcm16(audio: Any) -> bytes:
    import numpy as np

    return bytes((np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


def calibrate(speaker: Speaker) -> dict[str, float]:
    """RMS (dBFS) and peak of the voice's raw output on a calibration sentence."""
    import numpy as np

    sentences = speaker.voice.phonemize(CALIBRATION)
    audio = np.concatenate([a for s in sentences for c in clauses(s) for a in speaker.audio(c)])
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    return {"rms_dbfs": 20.0 * float(np.log10(max(rms, 1e-6))), "peak": float(np.max(np.abs(audio)))}


def speak(
    voices: Voices, out: Output, rid: int, text: str, cancelled: set[int], *, urgent: bool, need_at: float
) -> None:
    """The request's clauses as the model makes them, each in as few pieces as reach its listener
    in time (``need_at``, then the audio sent before: ``synth_worker.piper_pace``). ``urgent`` (its
    listener needs the first audio now: a turn's first sentence): on every core while no other
    child speaks. A lookahead request (needed seconds later) speaks on the child's share of the
    cores: a second thread buys little CPU-time efficiency, which a waiting listener's first audio
    is worth and a loaded machine's lookahead is not (one session fast, many sessions fair:
    ``synth_worker.piper_threads``)."""
    playback = Playback(until=need_at)
    try:
        for sentence in voices.alone.voice.phonemize(text):
            for clause in clauses(sentence):
                if rid in cancelled:
                    break
                speaker, _ = voices.pick()  # marks this child speaking either way
                if not urgent:
                    speaker = voices.shared or speaker
                for audio in speaker.audio(clause, playback):
                    out.frame(b"A", rid, pcm16(audio))
    finally:
        voices.quiet()
    if rid in cancelled:
        cancelled.discard(rid)
        out.frame(b"C", rid)
    else:
        out.frame(b"D", rid)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synth_worker.piper_child")
    parser.add_argument("--model", required=True)
    parser.add_argument("--config")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shared-threads", type=int, help="threads beside another speaking child")
    parser.add_argument("--busy-lock", help="the file the machine's Piper children share")
    args = parser.parse_args(argv)
    out = Output(sys.stdout.buffer)
    start = time.perf_counter()
    try:
        voices = load_voices(args.model, args.config, args.threads, args.shared_threads, args.busy_lock)
    except Exception as exc:  # every load failure is reported to the parent, then the child exits
        out.frame(b"X", 0, f"{type(exc).__name__}: {exc}".encode())
        return 1
    # onnxruntime's first run is slow: take it here (with the calibration), not on a job.
    level = calibrate(voices.alone)
    rate = int(voices.alone.voice.config.sample_rate)
    ready = {"sample_rate": rate, "load_s": time.perf_counter() - start, **level}
    out.frame(b"R", 0, json.dumps(ready).encode())
    work: queue.Queue[Say | None] = queue.Queue()
    cancelled: set[int] = set()
    threading.Thread(
        target=read_requests, args=(sys.stdin.buffer, work, cancelled), name="requests", daemon=True
    ).start()
    while (item := work.get()) is not None:
        rid, text, urgent, need_at = item
        try:
            if rid in cancelled:
                cancelled.discard(rid)
                out.frame(b"C", rid)
            else:
                speak(voices, out, rid, text, cancelled, urgent=urgent, need_at=need_at)
        except Exception as exc:  # one bad request is reported; the child keeps serving
            out.frame(b"X", rid, f"{type(exc).__name__}: {exc}".encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
