"""HTTP input handling in-process (the real app and hub, an in-memory MQTT link, no voice at all):
bad input is a 4xx with a code, never a 500; 503 only means no voice could speak real text."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from broker.errors import ProtocolError
from broker.ws_protocol import client_messages
from stream_server.http import auth
from stream_server.http.app import create_app
from stream_server.hub.hub import Hub
from synth_worker.voices import VoiceMap
from tests.stream_server.test_hub import GW, config
from tests.support.memlink import MemoryLink


@contextlib.asynccontextmanager
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with Hub(config(), VoiceMap.load(None, "maya"), {}, link=MemoryLink(GW)) as hub:
        transport = httpx.ASGITransport(app=create_app(hub))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            yield c


LONE_SURROGATE = [
    ("/tts", b'{"text": "\\ud800"}'),
    ("/tts", b'{"text": "Hello \\udfff there."}'),
    ("/v1/audio/speech", b'{"input": "\\ud800"}'),
    ("/tts", b'{"text": "Hi.", "voice": "\\ud800"}'),
    ("/tts", b'{"text": "Hi.", "format": "\\ud800"}'),
    ("/v1/audio/speech", b'{"input": "Hi.", "response_format": "\\udbff"}'),
    ("/v1/audio/speech", b'{"input": "Hi.", "model": 1, "voice": "\\ud800\\udc00\\ud800"}'),
]


@pytest.mark.parametrize(("path", "body"), LONE_SURROGATE)
async def test_a_lone_surrogate_anywhere_is_a_4xx_with_a_code(path: str, body: bytes) -> None:
    async with client() as c:
        r = await c.post(path, content=body, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    data = r.json()
    assert "error" in data or "detail" in data


@pytest.mark.parametrize("kind", ["text", "speak"])
def test_a_lone_surrogate_in_websocket_text_is_bad_text(kind: str) -> None:
    # A JSON frame may escape a lone surrogate; it cannot be spoken or sent on as UTF-8.
    with pytest.raises(ProtocolError) as err:
        client_messages.decode('{"type": "' + kind + '", "text": "Hi \\ud800"}')
    assert err.value.code == "bad_text"


@pytest.mark.parametrize("text", ["   ", "...", " ?! ", "\u2026 \u2014", "\n\t."])
@pytest.mark.parametrize(("path", "field"), [("/tts", "text"), ("/v1/audio/speech", "input")])
async def test_text_with_nothing_to_speak_is_400(path: str, field: str, text: str) -> None:
    async with client() as c:
        r = await c.post(path, json={field: text})
    assert r.status_code == 400 and r.json()["error"]["code"] == "nothing_to_speak"


async def test_real_text_with_no_voice_is_503() -> None:
    async with client() as c:
        r = await c.post("/tts", json={"text": "Nobody is here to say this."})
    assert r.status_code == 503 and r.json()["error"]["code"] == "speech_unavailable"


@pytest.mark.parametrize("speed", [0.5, 1.5, 4.0])
async def test_speech_takes_a_speed_in_range(speed: float) -> None:
    # speed is implemented (time-stretch; tests/stream_server/test_openai_speech.py measures it)
    async with client() as c:
        r = await c.post("/v1/audio/speech", json={"input": "Fast.", "speed": speed})
    assert r.status_code == 503  # accepted; no voice exists in this test


@pytest.mark.parametrize("speed", [0.1, 4.5])
async def test_speech_refuses_a_speed_out_of_range(speed: float) -> None:
    async with client() as c:
        r = await c.post("/v1/audio/speech", json={"input": "Fast.", "speed": speed})
    assert r.status_code == 400 and r.json()["error"]["param"] == "speed"


async def test_speech_at_speed_one_is_accepted() -> None:
    async with client() as c:
        r = await c.post("/v1/audio/speech", json={"input": "Normal.", "speed": 1.0})
    assert r.status_code == 503  # accepted; no voice exists in this test


async def test_ready_is_typed_json() -> None:
    async with client() as c:
        r = await c.get("/ready")
    assert r.status_code == 503
    assert r.json() == {
        "ready": False,
        "tiers": [],
        "broker_connected": True,
        "broker_node": "mqtt://127.0.0.1:1",  # the node of SESAME_MQTT_URL the link is on
        "workers": [],
        "sessions": 0,
    }


@pytest.mark.parametrize(
    ("headers", "query", "ok"),
    [
        ({"authorization": "Bearer tok"}, None, True),
        ({}, "tok", True),
        ({"authorization": "Bearer nope"}, None, False),
        ({"authorization": "tok"}, None, False),
        ({}, "nope", False),
        ({}, None, False),
        ({"authorization": "Bearer t\u00f6k"}, None, False),
    ],
)
def test_the_token_check(headers: dict[str, str], query: str | None, ok: bool) -> None:
    assert auth.authorized("tok", headers, query) is ok
    assert auth.authorized(None, headers, query) is True


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert auth.authorized("tok", {"authorization": "Bearer tok"})
    assert (b"Bearer tok", b"Bearer tok") in calls
