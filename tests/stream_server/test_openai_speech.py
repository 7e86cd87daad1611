"""POST /v1/audio/speech with the official ``openai`` package as the client, against the gateway."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
from collections.abc import AsyncIterator

import aiomqtt
import av
import httpx
import numpy as np
import openai
import pytest

from broker.audio import rms_dbfs
from tests.conftest import Service, T

TEXT = "Hello there. How are you today?"


@pytest.fixture
def gateway(espeak_gateway: Service) -> Service:
    return espeak_gateway  # the shared espeak-ng gateway (tests/conftest.py)


@contextlib.asynccontextmanager
async def client(svc: Service) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{svc.http_url}/v1", api_key="unused", timeout=12 * T, max_retries=0
    ) as c:
        yield c


def decode(data: bytes) -> tuple[np.ndarray, int]:
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray().reshape(-1).astype(np.float32) for f in container.decode(audio=0)]
        rate = container.streams.audio[0].rate
    audio = np.concatenate(frames)
    if audio.dtype != np.float32 or np.max(np.abs(audio)) > 1.5:
        audio = audio / 32768.0
    return audio, rate


async def speak(svc: Service, **kwargs: object) -> bytes:
    args: dict[str, object] = {"model": "tts-1", "voice": "maya", "input": TEXT, **kwargs}
    async with client(svc) as c:
        response = await c.audio.speech.create(**args)  # type: ignore[arg-type]
    return response.content


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
async def test_each_response_format_is_speech(gateway: Service, fmt: str) -> None:
    data = await speak(gateway, response_format=fmt)
    audio, rate = decode(data)
    assert 1.0 < len(audio) / rate < 10.0
    assert rms_dbfs(audio) > -50


async def test_pcm_is_24khz_pcm16_without_header(gateway: Service) -> None:
    data = await speak(gateway, response_format="pcm")
    assert len(data) % 2 == 0 and not data.startswith(b"RIFF")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32767
    assert 1.0 < len(samples) / 24000 < 10.0 and rms_dbfs(samples) > -50


async def test_speed_changes_duration(gateway: Service) -> None:
    normal = len(await speak(gateway, response_format="pcm")) // 2
    ratios = {}
    for speed in (0.25, 0.5, 1.5, 2.0, 4.0):
        ratios[speed] = len(await speak(gateway, response_format="pcm", speed=speed)) // 2 / normal
    for speed, ratio in ratios.items():
        assert ratio == pytest.approx(1 / speed, rel=0.05), (speed, ratios)


async def test_sse_stream_has_openais_events(gateway: Service) -> None:
    chunks: list[bytes] = []
    async with (
        client(gateway) as c,
        c.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="maya", input=TEXT, response_format="wav", stream_format="sse"
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        body = b""
        async for chunk in response.iter_bytes():
            body += chunk
    events = [json.loads(block[6:]) for block in body.split(b"\n\n") if block.startswith(b"data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert len(events) > 2
    done = events[-1]
    assert done["type"] == "speech.audio.done"
    assert done["usage"]["input_tokens"] == len(TEXT)
    usage = done["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > len(TEXT)
    chunks = [base64.b64decode(e["audio"]) for e in events[:-1]]
    audio, rate = decode(b"".join(chunks))
    assert rate == 24000 and len(audio) / rate > 1.0


async def test_first_bytes_of_a_long_text_arrive_before_its_last_sentence_is_made(gateway: Service) -> None:
    sentences = [f"This is sentence number {i} of a long answer." for i in range(24)]
    ended: list[int] = []  # seqs whose sentence_end the gateway published (session events on MQTT)
    seen_at_first_byte: int | None = None
    all_ended = asyncio.Event()
    url = gateway.broker.url_for("listener")
    async with aiomqtt.Client(
        url.host, url.port, username=url.username, password=url.password, protocol=aiomqtt.ProtocolVersion.V5
    ) as mqtt:
        await mqtt.subscribe("sesame/v1/sessions/+/events")

        async def listen() -> None:
            async for message in mqtt.messages:
                event = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                if event["type"] == "sentence_end":
                    ended.append(event["seq"])
                    if len(ended) == len(sentences):
                        all_ended.set()

        listener = asyncio.create_task(listen())
        try:
            async with (
                client(gateway) as c,
                c.audio.speech.with_streaming_response.create(
                    model="sesame", voice="maya", input=" ".join(sentences), response_format="pcm"
                ) as response,
            ):
                async for _ in response.iter_bytes():
                    if seen_at_first_byte is None:
                        seen_at_first_byte = len(ended)
            async with asyncio.timeout(4 * T):
                await all_ended.wait()
        finally:
            listener.cancel()
    assert sorted(ended) == list(range(len(sentences)))
    assert seen_at_first_byte is not None and seen_at_first_byte < len(sentences) - 1


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"voice": "alloy"}, "voice"),
        ({"model": "whisper-1"}, "model"),
        ({"speed": 5.0}, "speed"),
        ({"response_format": "ogg"}, "response_format"),
        ({"input": ""}, "input"),
        ({"instructions": "whisper"}, "instructions"),
    ],
)
async def test_bad_requests_are_400_with_openais_error_shape(
    gateway: Service, kwargs: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await speak(gateway, **kwargs)
    error = info.value.body
    assert isinstance(error, dict) and error["type"] == "invalid_request_error"
    assert error["param"] == param
    if param == "voice":
        assert "maya" in error["message"] and "v2/" in error["message"]


async def test_lone_surrogate_and_broken_json_are_400(gateway: Service) -> None:
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=4 * T) as http:
        body = b'{"model":"sesame","voice":"maya","input":"\\ud800"}'
        r = await http.post("/v1/audio/speech", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = await http.post(
            "/v1/audio/speech", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400


async def test_voices_and_models_lists(gateway: Service) -> None:
    async with httpx.AsyncClient(base_url=gateway.http_url, timeout=4 * T) as http:
        voices = (await http.get("/v1/audio/voices")).json()
    by_id = {v["id"]: v for v in voices["data"]}
    assert by_id["maya"]["default"] is True and "espeak-ng" in by_id["maya"]["engines"]
    assert by_id["v2/en_speaker_3"]["engines"] == ["bark"]
    assert by_id["v2/fr_speaker_0"]["language"] == "fr"
    async with client(gateway) as c:
        models = await c.models.list()
    assert {"sesame", "tts-1"} <= {m.id for m in models.data}


async def test_bark_preset_voice_is_accepted_per_request(gateway: Service) -> None:
    data = await speak(gateway, voice="v2/de_speaker_1", input="Guten Tag.", response_format="wav")
    audio, rate = decode(data)
    assert len(audio) / rate > 0.3
