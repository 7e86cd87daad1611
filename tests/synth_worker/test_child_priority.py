"""An engine's child process runs below the hops that carry its audio (synth_worker/child_priority.py):
a session of its own, its nice and its autogroup's raised (every thread of it); 0 leaves both as the
worker's. Real espeak-ng and Piper children."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synth_worker.child_priority import DEFAULT_NICE, lower_group, niced
from synth_worker.engine import CancelToken, SynthesisRequest
from synth_worker.engines import EngineSettings, build_worker_engine
from synth_worker.espeak import EspeakEngine
from synth_worker.voices import VoiceMap
from tests.conftest import T
from tests.support.procfs import thread_nices

OURS = os.getpriority(os.PRIO_PROCESS, 0)  # this process plays the worker


def autogroup_nice(pid: int) -> int | None:
    """The nice of ``pid``'s autogroup ("/autogroup-42 nice 19"); None: this kernel has none, or
    ``pid`` is in the kernel's default group (the file is empty: no process on its way from init
    called ``setsid``, as under a CI runner started by init)."""
    path = Path(f"/proc/{pid}/autogroup")
    fields = path.read_text().split() if path.exists() else []
    return int(fields[-1]) if fields else None


OUR_GROUP = autogroup_nice(os.getpid())


def assert_below(pid: int, nice: int) -> None:
    assert os.getsid(pid) == pid  # its own session: its own autogroup
    assert set(thread_nices(pid)) == {nice}
    assert autogroup_nice(pid) in (nice, None)
    assert autogroup_nice(os.getpid()) == OUR_GROUP  # the worker's group is untouched


async def test_espeak_ng_runs_below_the_worker() -> None:
    engine = EspeakEngine()
    chunks = [c async for c in engine.synthesize(SynthesisRequest("Hello.", "maya"), CancelToken())]
    assert chunks
    (spare,) = engine._spares.values()  # the next request's process, started and waiting
    try:
        assert DEFAULT_NICE == 19
        assert_below(spare.pid, DEFAULT_NICE)
    finally:
        engine.close()
        async with asyncio.timeout(T):
            await spare.wait()


async def test_espeak_ng_at_nice_0_stays_at_the_worker_s_priority() -> None:
    engine = build_worker_engine("espeak-ng", VoiceMap(), EngineSettings(child_nice=0))
    assert isinstance(engine, EspeakEngine)
    [c async for c in engine.synthesize(SynthesisRequest("Hello.", "maya"), CancelToken())]
    (spare,) = engine._spares.values()
    try:
        assert os.getsid(spare.pid) == spare.pid
        assert set(thread_nices(spare.pid)) == {OURS}
        assert autogroup_nice(spare.pid) in (0, None)
    finally:
        engine.close()
        async with asyncio.timeout(T):
            await spare.wait()


async def test_every_thread_of_the_piper_child_runs_below_the_worker() -> None:
    pytest.importorskip("piper", reason="piper-tts is the 'piper' extra")
    from synth_worker.piper import PiperEngine

    engine = PiperEngine(threads=2, child_nice=12)
    try:
        await engine.load()  # onnxruntime's threads start with the model: after the nice is set
        (child,) = engine._children.values()
        assert child._proc is not None
        pid = child._proc.pid
        assert len(thread_nices(pid)) > 1  # onnxruntime's threads, too
        assert_below(pid, 12)
    finally:
        await engine.aclose()


def test_a_child_in_the_parent_s_session_is_refused_and_the_parent_s_group_kept() -> None:
    """Raising the autogroup's nice of a child that shares ours would lower the worker itself."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        with pytest.raises(ValueError, match="not a session leader"):
            lower_group(child.pid, 19)
        assert set(thread_nices(child.pid)) == {OURS}
        assert autogroup_nice(os.getpid()) == OUR_GROUP
    finally:
        child.communicate(b"", timeout=T)


def test_a_child_already_gone_is_left_to_its_engine() -> None:
    child = subprocess.Popen(["true"], start_new_session=True)
    child.wait(timeout=T)
    assert not Path(f"/proc/{child.pid}").exists()
    lower_group(child.pid, 19)  # reaped: no such process, and nothing raised


def test_the_nice_is_absolute_and_never_asks_to_go_above_the_worker() -> None:
    """coreutils' ``nice -n`` adds to the caller's nice: the step is what reaches the target."""
    assert niced(["espeak-ng"], 0) == ["espeak-ng"]
    code = (
        "import os; from synth_worker.child_priority import niced; os.nice(15); "
        "print(niced(['x'], 19)[1:], niced(['x'], 10))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=T)
    assert out.stdout.split("\n")[0] == "['-n', '4', 'x'] ['x']"
