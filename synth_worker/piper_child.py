# SPDX-License-Identifier: GPL-3.0-or-later
"""The Piper child process: the only code of sesame-voice that imports ``piper`` (piper-tts, GPL).

    python -m synth_worker.piper_child --model VOICE.onnx [--config VOICE.onnx.json] [--threads N]

This file is distributed under the GPL-3.0-or-later, as piper-tts is. It is a program of its own:
the worker and the gateway start it as a child process and talk to it over its stdin and stdout,
the same arm's-length boundary the project keeps with espeak-ng. Nothing else imports it.

stdin: one JSON object per line, ``{"op": "say", "id": N, "text": "..."}`` or
``{"op": "cancel", "id": N}``.

stdout: frames of a 9-byte header ``<cII`` (kind, id, payload length) and the payload:

    R  id 0   ready: JSON {"sample_rate": int, "load_s": float}, once the model is loaded and warm
    A  id N   audio: PCM16 little-endian mono at the voice's sample rate (one sentence of the text)
    D  id N   done: every sentence of request N was written
    C  id N   cancelled: request N stopped (before it started, or between two sentences)
    X  id N   error: UTF-8 message (id 0: the model could not be loaded; the child then exits 1)

Requests are spoken one at a time, in order; a cancel is read while another request speaks.
"""

from __future__ import annotations

import argparse
import json
import queue
import struct
import sys
import threading
import time
from typing import Any, BinaryIO

HEADER = struct.Struct("<cII")


class Output:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def frame(self, kind: bytes, rid: int, payload: bytes = b"") -> None:
        with self.lock:
            self.stream.write(HEADER.pack(kind, rid, len(payload)) + payload)
            self.stream.flush()


def read_requests(stdin: BinaryIO, work: queue.Queue[tuple[int, str] | None], cancelled: set[int]) -> None:
    """Reader thread: say -> the work queue; cancel -> the cancelled set; EOF -> None (stop)."""
    for raw in stdin:
        try:
            msg = json.loads(raw)
            rid = int(msg["id"])
            if msg["op"] == "cancel":
                cancelled.add(rid)
            elif msg["op"] == "say":
                work.put((rid, str(msg["text"])))
        except (ValueError, KeyError, TypeError):
            continue  # the parent writes these lines; a bad one is dropped, the next is read
    work.put(None)


def load_voice(model: str, config: str | None, threads: int) -> Any:
    import onnxruntime
    from piper import PiperVoice
    from piper.config import PiperConfig

    with open(config or f"{model}.json", encoding="utf-8") as f:
        piper_config = PiperConfig.from_dict(json.load(f))
    options = onnxruntime.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=piper_config)


def speak(voice: Any, out: Output, rid: int, text: str, cancelled: set[int]) -> None:
    for chunk in voice.synthesize(text):
        if rid in cancelled:
            break
        out.frame(b"A", rid, chunk.audio_int16_bytes)
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
    args = parser.parse_args(argv)
    out = Output(sys.stdout.buffer)
    start = time.perf_counter()
    try:
        voice = load_voice(args.model, args.config, args.threads)
    except Exception as exc:  # every load failure is reported to the parent, then the child exits
        out.frame(b"X", 0, f"{type(exc).__name__}: {exc}".encode())
        return 1
    for _ in voice.synthesize("Ready."):  # onnxruntime's first run is slow: take it here, not on a job
        pass
    ready = {"sample_rate": int(voice.config.sample_rate), "load_s": time.perf_counter() - start}
    out.frame(b"R", 0, json.dumps(ready).encode())
    work: queue.Queue[tuple[int, str] | None] = queue.Queue()
    cancelled: set[int] = set()
    threading.Thread(
        target=read_requests, args=(sys.stdin.buffer, work, cancelled), name="requests", daemon=True
    ).start()
    while (item := work.get()) is not None:
        rid, text = item
        try:
            if rid in cancelled:
                cancelled.discard(rid)
                out.frame(b"C", rid)
            else:
                speak(voice, out, rid, text, cancelled)
        except Exception as exc:  # one bad request is reported; the child keeps serving
            out.frame(b"X", rid, f"{type(exc).__name__}: {exc}".encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
