"""``sesame-voice say`` as a user runs it, against the real gateway process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from broker.audio import rms_dbfs
from broker.launcher import Mosquitto
from clients.say import SayError, parse
from tests.conftest import Service, T
from tests.support.localstack import REPO

TEXT = "Hello there. How are you?"


def say(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sesame_voice.cli", "say", "--url", url, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=12 * T,
        check=False,
    )


@pytest.mark.parametrize("suffix", ["wav", "mp3", "flac", "ogg"])
def test_stdin_to_each_file_format(espeak_gateway: Service, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"hi.{suffix}"
    done = say(espeak_gateway.ws_url, "-o", str(out), stdin=TEXT + "\n")
    assert done.returncode == 0, done.stderr
    audio, rate = sf.read(out, dtype="float32")
    assert rate in (24000, 48000)
    assert len(audio) / rate > 1.0
    assert rms_dbfs(audio) > -50
    lines = [line for line in done.stderr.splitlines() if line.startswith("[")]
    assert len(lines) == 2
    assert "espeak-ng" in lines[0] and "Hello there." in lines[0]
    assert "How are you?" in lines[1]


def test_text_argument(espeak_gateway: Service, tmp_path: Path) -> None:
    out = tmp_path / "arg.wav"
    done = say(espeak_gateway.ws_url, "Just one sentence.", "-o", str(out), "-q")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    info = sf.info(out)
    assert info.samplerate == 24000 and info.frames > 12000


def test_undelivered_text_exits_non_zero_and_prints_it(tmp_path: Path) -> None:
    # Only the worker tier, and no worker: no voice can speak.
    with Mosquitto() as broker:
        svc = Service(broker, None, {"SESAME_TIERS": "workers", "SESAME_CACHE_ENABLED": "false"})
        try:
            done = say(svc.ws_url, "-o", str(tmp_path / "x.wav"), stdin="Nobody can say this.")
        finally:
            svc.close()
    assert done.returncode == 1
    assert "Nobody can say this." in done.stderr.splitlines()[-1]


def test_no_gateway_exits_3(tmp_path: Path) -> None:
    from broker.launcher import free_port

    done = say(f"ws://127.0.0.1:{free_port()}/ws", "Hi.", "-o", str(tmp_path / "x.wav"))
    assert done.returncode == 3
    assert "cannot connect" in done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["hi", "-o", "x.aiff"], "cannot tell the format"),
        (["hi", "-o", "x.ogg", "--sample-rate", "22050"], "Opus"),
        (["   "], "nothing to say"),
    ],
)
def test_bad_arguments_are_clear(argv: list[str], message: str) -> None:
    with pytest.raises(SayError, match=message):
        parse(argv, {})


def test_stdin_is_spoken_as_it_arrives_not_when_it_ends(espeak_gateway: Service, tmp_path: Path) -> None:
    out = tmp_path / "live.wav"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sesame_voice.cli", "say", "--url", espeak_gateway.ws_url, "-o", str(out)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdin is not None and proc.stderr is not None
    try:
        proc.stdin.write("Hello there. How ")  # like an LLM that has written this much so far
        proc.stdin.flush()
        first = proc.stderr.readline()  # blocks until say reports the first sentence spoken
        assert first.startswith("[1]") and "Hello there." in first
        assert proc.poll() is None  # stdin is still open: it spoke before the text ended
        proc.stdin.write(" are you?\n")
        proc.stdin.close()
        assert proc.wait(timeout=12 * T) == 0
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "How are you?" in rest
    assert sf.info(out).frames > 24000


def test_playing_with_no_audio_player_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from clients.say import PlayerSink

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SayError, match="use -o FILE"):
        asyncio.run(PlayerSink.start(24000))
