"""The gateway URL every client takes (``--url`` or ``SESAME_URL``): an http(s) base, as the plan's
backend sets it (``SESAME_URL=http://sesame-csm:8000``), or a ws(s) URL; anything else is one line
on stderr and exit 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from clients.endpoint import BadUrl, GatewayUrls, configured_url, gateway_urls
from clients.voice_client import VoiceClient
from clients.voice_events import SentenceAudio, TurnEnded
from tests.conftest import Service, T
from tests.support.localstack import REPO

GOOD = [
    ("http://sesame-csm:8000", "http://sesame-csm:8000", "ws://sesame-csm:8000/ws"),
    ("http://127.0.0.1:8000/", "http://127.0.0.1:8000", "ws://127.0.0.1:8000/ws"),
    ("https://voice.example/sesame", "https://voice.example/sesame", "wss://voice.example/sesame/ws"),
    ("ws://127.0.0.1:8000/ws", "http://127.0.0.1:8000", "ws://127.0.0.1:8000/ws"),
    ("wss://voice.example", "https://voice.example", "wss://voice.example/ws"),
    ("ws://h:9/ws?token=t", "http://h:9", "ws://h:9/ws?token=t"),
    (" HTTP://[::1]:8000 ", "http://[::1]:8000", "ws://[::1]:8000/ws"),
]
BAD = [
    ("ftp://host/x", "is not an http(s) base"),
    ("sesame-csm:8000", "is not an http(s) base"),
    ("127.0.0.1:8000", "is not an http(s) base"),
    ("", "is not an http(s) base"),
    ("http://:8000", "has no host"),
    ("http://h:99999", "invalid port"),
    ("http://h:port", "invalid port"),
    ("http://[::1", "invalid port or address"),
    ("http://h/a b", "spaces"),
    ("http://h/#x", "#fragment"),
]


@pytest.mark.parametrize(("url", "http", "ws"), GOOD)
def test_both_forms_name_the_same_gateway(url: str, http: str, ws: str) -> None:
    assert gateway_urls(url) == GatewayUrls(http=http, ws=ws)


@pytest.mark.parametrize(("url", "why"), BAD)
def test_a_bad_url_is_one_clear_line(url: str, why: str) -> None:
    with pytest.raises(BadUrl) as info:
        gateway_urls(url)
    message = str(info.value)
    assert why in message and "\n" not in message
    assert "http(s) base" in message  # says what is wanted


def test_sesame_url_is_the_default() -> None:
    assert configured_url({"SESAME_URL": " http://sesame-csm:8000 "}) == "http://sesame-csm:8000"
    assert configured_url({"SESAME_URL": ""}) == "http://127.0.0.1:8000"
    assert configured_url({}) == "http://127.0.0.1:8000"


def test_voice_client_takes_either_form_and_refuses_others(monkeypatch: pytest.MonkeyPatch) -> None:
    assert VoiceClient("http://h:8000").url == "ws://h:8000/ws"
    assert VoiceClient("wss://h/ws", token="t").url == "wss://h/ws"  # the token goes in a header
    monkeypatch.setenv("SESAME_URL", "https://voice.example")
    assert VoiceClient().url == "wss://voice.example/ws"
    with pytest.raises(BadUrl):
        VoiceClient("ftp://h")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sesame_voice.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=12 * T,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["say", "--url", "127.0.0.1:8000", "Hello."],
        ["loadtest", "--url", "ftp://h"],
        ["replay", str(REPO / "clients" / "traces" / "udhr_two_turns.jsonl"), "--url", "http://h:99999"],
    ],
    ids=["say", "loadtest", "replay"],
)
def test_each_cli_answers_a_bad_url_with_one_line(argv: list[str]) -> None:
    done = cli(*argv)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"sesame-voice {argv[0]}:" in lines[0] and "gateway URL" in lines[0], lines


def test_a_bad_sesame_url_is_one_line_too() -> None:
    done = cli("say", "Hello.", env={"SESAME_URL": "sesame-csm:8000"})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


@pytest.fixture
def gateway(espeak_gateway: Service) -> Service:
    return espeak_gateway  # the shared espeak-ng gateway (tests/conftest.py)


def test_say_speaks_through_the_plans_http_sesame_url(gateway: Service, tmp_path: Path) -> None:
    out = tmp_path / "hi.wav"
    done = cli("say", "Hello there.", "-o", str(out), "-q", env={"SESAME_URL": gateway.http_url})
    assert done.returncode == 0, done.stderr
    assert sf.info(out).frames > 12000


async def test_voice_client_speaks_through_an_http_base(gateway: Service) -> None:
    async with VoiceClient(gateway.http_url) as voice:
        await voice.speak("Hello there.")
        spoken = []
        async for event in voice.events():
            match event:
                case SentenceAudio(engine=engine):
                    spoken.append(engine)
                case TurnEnded():
                    break
    assert spoken == ["espeak-ng"]
