"""End to end over a real mosquitto, a real Bark worker (dev checkpoint) and the gateway process."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
from websockets.asyncio.client import connect

from broker.audio import rms_dbfs
from broker.launcher import Mosquitto
from tests.conftest import Service, T
from tests.wsclient import collect, send

THREE = "The sun rose over the hills. Birds began to sing! Was it morning already?"


async def test_three_sentences_token_by_token_arrive_in_order(service: Service) -> None:
    async with connect(service.ws_url) as ws:
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready" and ready["sample_rate"] == 24000 and ready["protocol"] == 1
        for i in range(0, len(THREE), 3):  # fragments that cut words
            await send(ws, type="text", text=THREE[i : i + 3])
        await send(ws, type="flush")
        turn = await collect(ws, 12 * T)
    starts, ends = turn.of("sentence_start"), turn.of("sentence_end")
    assert [s["seq"] for s in starts] == [0, 1, 2]
    assert [s["text"] for s in starts] == [
        "The sun rose over the hills.",
        "Birds began to sing!",
        "Was it morning already?",
    ]
    assert all(s["engine"] == "bark" for s in starts)
    assert [e["seq"] for e in ends] == [0, 1, 2]
    order = [m["type"] for m in turn.messages if m["type"] in ("sentence_start", "sentence_end")]
    assert order == ["sentence_start", "sentence_end"] * 3
    assert [f.seq for f in turn.frames] == sorted(f.seq for f in turn.frames)
    for end in ends:
        audio = turn.audio(int(end["seq"]))  # type: ignore[arg-type]
        assert len(audio) == end["samples"] > 0
        assert rms_dbfs(audio) > -50, "audio must not be silence"


async def test_cancel_mid_turn_stops_audio_and_session_stays_usable(service: Service) -> None:
    async with connect(service.ws_url) as ws:
        await ws.recv()
        long_text = " ".join(f"This is sentence number {i}." for i in range(12))
        await send(ws, type="speak", text=long_text)
        first = await collect(ws, 12 * T, until="sentence_start")
        assert first.of("sentence_start")
        await send(ws, type="cancel")
        after = await collect(ws, 4 * T, until="cancelled")
        cancelled_turn = after.of("cancelled")[0]["turn"]
        # After the cancel acknowledgement nothing from the old turn may arrive: the next turn's
        # messages are the first thing we see.
        await send(ws, type="speak", text="Are you still there?")
        turn = await collect(ws, 12 * T)
        assert all(m.get("turn", cancelled_turn + 1) != cancelled_turn for m in turn.messages)
        starts = turn.of("sentence_start")
        assert [s["text"] for s in starts] == ["Are you still there?"]
        assert {f.seq for f in turn.frames} == {starts[0]["seq"]}


async def test_post_tts_returns_valid_wav(service: Service) -> None:
    async with httpx.AsyncClient(timeout=12 * T) as client:
        r = await client.post(f"{service.http_url}/tts", json={"text": "Hello from Maya.", "voice": "maya"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    audio, rate = sf.read(io.BytesIO(r.content))
    assert rate == 24000 and len(audio) > 2400 and rms_dbfs(np.asarray(audio, dtype=np.float32)) > -50


async def test_bad_input_gets_errors_and_the_session_keeps_serving(service: Service) -> None:
    async with connect(service.ws_url) as ws:
        await ws.recv()
        bad = [
            ("{not json", "bad_json"),
            (json.dumps({"type": "sing"}), "unknown_type"),
            (json.dumps({"type": "text"}), "bad_field"),
            (json.dumps({"type": "text", "text": 5}), "bad_field"),
            (json.dumps({"type": "text", "text": "x" * 20_000}), "text_too_long"),
            (json.dumps({"type": "start", "voice": "nobody"}), "unknown_voice"),
            (json.dumps([1, 2]), "bad_message"),
        ]
        for raw, code in bad:
            await ws.send(raw)
            err = json.loads(await asyncio.wait_for(ws.recv(), T))
            assert err["type"] == "error" and err["code"] == code, (raw[:40], err)
        await ws.send(b"\x00\x01binary")
        err = json.loads(await asyncio.wait_for(ws.recv(), T))
        assert err["code"] == "binary_not_allowed"
        await send(ws, type="speak", text="Still here.")
        turn = await collect(ws, 12 * T)
        assert [s["text"] for s in turn.of("sentence_start")] == ["Still here."]
    async with httpx.AsyncClient(timeout=T) as client:
        assert (await client.post(f"{service.http_url}/tts", json={"text": ""})).status_code == 422
        assert (
            await client.post(f"{service.http_url}/tts", json={"text": "hi", "voice": "x"})
        ).status_code == 400
        assert (await client.get(f"{service.http_url}/health")).status_code == 200


async def test_two_sessions_never_share_audio(service: Service) -> None:
    async def run(text: str) -> tuple[str, list[str], int, int]:
        async with connect(service.ws_url) as ws:
            ready = json.loads(await ws.recv())
            await send(ws, type="speak", text=text)
            turn = await collect(ws, 20 * T)
            samples = sum(int(e["samples"]) for e in turn.of("sentence_end"))  # type: ignore[call-overload]
            got = sum(len(f.payload) // 2 for f in turn.frames)
            return str(ready["session_id"]), [str(s["text"]) for s in turn.of("sentence_start")], samples, got

    a, b = await asyncio.gather(run("Apples are red. Limes are green."), run("Cats purr softly."))
    assert a[0] != b[0]
    assert a[1] == ["Apples are red.", "Limes are green."] and b[1] == ["Cats purr softly."]
    assert a[2] == a[3] and b[2] == b[3], "every frame a session got belongs to its own sentences"


async def test_http_api_openapi_ready_and_openai_speech(service: Service) -> None:
    async with httpx.AsyncClient(timeout=12 * T) as client:
        spec = (await client.get(f"{service.http_url}/openapi.json")).json()
        assert {"/tts", "/v1/audio/speech", "/health", "/ready", "/metrics"} <= set(spec["paths"])
        ready = await client.get(f"{service.http_url}/ready")
        assert ready.status_code == 200 and "workers" in ready.json()["tiers"]
        r = await client.post(
            f"{service.http_url}/v1/audio/speech",
            json={"model": "sesame", "input": "Hello there.", "voice": "maya", "response_format": "flac"},
        )
        assert r.status_code == 200 and r.headers["content-type"] == "audio/flac"
        audio, rate = sf.read(io.BytesIO(r.content))
        assert rate == 24000 and len(audio) > 0
        assert (await client.get(f"{service.http_url}/")).text.lower().count("<script") >= 1


async def test_common_phrases_are_preloaded_into_the_cache(mosquitto: Mosquitto, dev_model_dir: Path) -> None:
    svc = Service(mosquitto, dev_model_dir, {"SESAME_TIERS": "workers,espeak-ng"})
    try:
        svc.start_worker("bark-1")
        # The plan's five common phrases, made by Bark once the worker is ready.
        preloaded = svc.gateway.wait_events("phrase_preloaded", 5, 12 * T)
        assert "How can I help you today?" in {e["text"] for e in preloaded}
        async with connect(svc.ws_url) as ws:
            await ws.recv()
            await send(ws, type="speak", text="How can I help you today? Something new.")
            turn = await collect(ws, 12 * T)
    finally:
        svc.close()
    starts = turn.of("sentence_start")
    assert [(s["cached"], s["engine"]) for s in starts] == [(True, "bark"), (False, "bark")]
    ends = turn.of("sentence_end")
    assert len(turn.audio(0)) == ends[0]["samples"] > 0


async def test_websocket_audio_is_not_deflated(service: Service) -> None:
    """The client offers permessage-deflate (websockets does by default); the gateway declines it."""
    async with connect(service.ws_url) as ws:
        assert ws.response is not None
        assert "permessage-deflate" not in (ws.response.headers.get("Sec-WebSocket-Extensions") or "")
        await ws.recv()  # ready: the session works uncompressed
