"""With SESAME_AUTH_TOKEN set, clients need the token; the token never reaches the logs."""

from __future__ import annotations

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from broker.launcher import Mosquitto
from clients.voice_client import VoiceClient
from clients.voice_events import SentenceStarted
from tests.conftest import Service, T
from tests.wsclient import collect, send

TOKEN = "s3cret-token-value"


async def test_token_is_required_and_never_logged(mosquitto: Mosquitto) -> None:
    svc = Service(mosquitto, None, {"SESAME_TIERS": "espeak-ng", "SESAME_AUTH_TOKEN": TOKEN})
    try:
        with pytest.raises((InvalidStatus, ConnectionClosed)):
            async with connect(svc.ws_url) as ws:
                await ws.recv()
        async with connect(f"{svc.ws_url}?token={TOKEN}") as ws:
            await ws.recv()
            await send(ws, type="speak", text="Authorized.")
            turn = await collect(ws, 6 * T)
        assert [s["text"] for s in turn.of("sentence_start")] == ["Authorized."]
        async with httpx.AsyncClient(timeout=6 * T) as client:
            denied = await client.post(f"{svc.http_url}/tts", json={"text": "No."})
            allowed = await client.post(
                f"{svc.http_url}/tts", json={"text": "Yes."}, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert denied.status_code == 401 and allowed.status_code == 200
            # Monitoring needs the token too; load balancers' /health and /ready do not.
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            metrics = [await client.get(f"{svc.http_url}/metrics", headers=h) for h in ({}, bearer)]
            assert [r.status_code for r in metrics] == [401, 200]
            assert (await client.get(f"{svc.http_url}/health")).status_code == 200
        # The Python client sends the token in a header, not in the URL.
        async with VoiceClient(svc.ws_url, token=TOKEN) as voice:
            await voice.speak("Header.")
            started = [e.text for e in await voice.turn() if isinstance(e, SentenceStarted)]
        assert started == ["Header."]
    finally:
        svc.close()
    assert all(TOKEN not in line for line in svc.gateway.lines)
