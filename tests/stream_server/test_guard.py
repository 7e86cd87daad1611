"""Limits before work (stream_server/http/guard.py, slow_headers.py): auth before any body byte is
read, bodies capped while they stream, slow headers and bodies cut, no 5xx for anything a client
sends (a fuzz of malformed bodies), validation errors that never echo input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from broker.errors import ConfigError
from stream_server.config import GatewayConfig
from stream_server.http.app import create_app
from stream_server.http.auth import Tokens, client_identity
from stream_server.http.guard import Guard, GuardSettings, Message
from stream_server.http.slow_headers import deadlined_h11
from stream_server.hub.hub import Hub
from synth_worker.voices import VoiceMap
from tests.conftest import T
from tests.stream_server.test_hub import GW, config
from tests.support.memlink import MemoryLink

TOKEN = "s3cret-token"


@contextlib.asynccontextmanager
async def client(**settings: object) -> AsyncIterator[httpx.AsyncClient]:
    cfg = replace(config(), **settings)  # type: ignore[arg-type]
    async with Hub(cfg, VoiceMap.load(None, "maya"), {}, link=MemoryLink(GW)) as hub:
        transport = httpx.ASGITransport(app=create_app(hub))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
            yield c


# ---- the middleware alone: what it reads ------------------------------------------------------


class Channel:
    """An ASGI receive that counts what the app read."""

    def __init__(self, chunks: list[bytes], *, ends: bool = True) -> None:
        self.chunks = chunks
        self.ends = ends  # False: the last chunk says more is coming, and nothing comes
        self.read = 0

    async def __call__(self) -> Message:
        if self.read >= len(self.chunks):
            await asyncio.Event().wait()  # a client that stopped sending
        self.read += 1
        more = self.read < len(self.chunks) or not self.ends
        return {"type": "http.request", "body": self.chunks[self.read - 1], "more_body": more}


async def run_guard(
    chunks: list[bytes], headers: dict[str, str], *, ends: bool = True, **kw: object
) -> tuple[int, Channel, bool]:
    reached = False

    async def app(scope: object, receive: object, send: object) -> None:
        nonlocal reached
        reached = True

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    guard = Guard(app, GuardSettings(**kw), lambda _: None)  # type: ignore[arg-type]
    channel = Channel(chunks, ends=ends)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/tts",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    await guard(scope, channel, send)
    status = sent[0]["status"] if sent else 200
    return status, channel, reached


async def test_no_body_byte_is_read_before_auth() -> None:
    status, channel, reached = await run_guard([b"x" * 1000] * 100, {}, tokens=Tokens(TOKEN))
    assert (status, channel.read, reached) == (401, 0, False)


async def test_a_declared_oversize_body_is_refused_unread() -> None:
    headers = {"authorization": f"Bearer {TOKEN}", "content-length": str(10**8)}
    status, channel, reached = await run_guard([b"x"], headers, tokens=Tokens(TOKEN), max_body_bytes=65_536)
    assert (status, channel.read, reached) == (413, 0, False)


async def test_an_undeclared_oversize_body_stops_at_the_first_chunk_over() -> None:
    status, channel, reached = await run_guard([b"x" * 40_000] * 50, {}, max_body_bytes=65_536)
    assert (status, channel.read, reached) == (413, 2, False)


async def test_a_body_that_stops_mid_way_is_cut_at_its_deadline() -> None:
    status, _, reached = await run_guard([b'{"text": '], {}, ends=False, body_timeout_s=0.05)
    assert (status, reached) == (408, False)


async def test_requests_beyond_the_concurrency_limit_are_429() -> None:
    release = asyncio.Event()

    async def app(scope: object, receive: object, send: object) -> None:
        await release.wait()

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    guard = Guard(app, GuardSettings(max_concurrent=1), lambda _: None)  # type: ignore[arg-type]
    scope = {"type": "http", "method": "GET", "path": "/health", "query_string": b"", "headers": []}
    first = asyncio.create_task(guard(dict(scope), Channel([]), send))
    await asyncio.sleep(0)
    await guard(dict(scope), Channel([]), send)
    assert sent[0]["status"] == 429
    release.set()
    await first


# ---- the real app ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/metrics", {}, 401),
        ("/metrics", {"authorization": "Bearer read-only"}, 200),
        ("/metrics", {"authorization": f"Bearer {TOKEN}"}, 200),
        ("/metrics?token=read-only", {}, 200),
        ("/api/status", {}, 401),
        ("/api/monitoring/voice-metrics", {}, 401),
        ("/api/monitoring/voice-metrics", {"authorization": "Bearer read-only"}, 200),
        ("/status", {}, 401),
        ("/health", {}, 200),
        ("/ready", {}, 503),  # open: no voice in this test, so not ready
    ],
)
async def test_monitoring_needs_a_token_health_and_ready_do_not(
    path: str, headers: dict[str, str], status: int
) -> None:
    async with client(auth_token=TOKEN, read_token="read-only") as c:
        r = await c.get(path, headers=headers)
    assert r.status_code == status


async def test_the_read_only_token_cannot_speak() -> None:
    async with client(auth_token=TOKEN, read_token="read-only") as c:
        r = await c.post("/tts", json={"text": "Hello."}, headers={"authorization": "Bearer read-only"})
    assert r.status_code == 401


async def test_a_validation_error_does_not_echo_the_input() -> None:
    secret = "my-private-words-" * 50
    async with client() as c:
        r = await c.post("/tts", json={"text": secret, "format": ["not", secret]})
    assert r.status_code == 422
    assert "my-private-words" not in r.text and len(r.text) < 600


@pytest.mark.parametrize("path", ["/tts", "/v1/audio/speech"])
@pytest.mark.parametrize("depth", [1000, 100_000])
async def test_deep_nesting_is_400(path: str, depth: int) -> None:
    async with client(max_body_bytes=1 << 20) as c:
        r = await c.post(path, content=b"[" * depth + b"]" * depth)
    assert r.status_code in (400, 422), r.text


FIELD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
KEYS = st.sampled_from(
    [
        "text",
        "input",
        "voice",
        "format",
        "sample_rate",
        "model",
        "response_format",
        "speed",
        "stream_format",
        "x",
    ]
)
BODIES = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(KEYS, FIELD, max_size=5).map(lambda d: json.dumps(d).encode()),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(1, 5000).map(lambda n: b'{"input": ' * n),
    st.integers(1, 50_000).map(lambda n: b"[" * n + b"]" * n),  # RecursionError in a decoder
    st.integers(1, 50_000).map(lambda n: b'{"text": ' + b'{"a":' * n + b"1" + b"}" * (n + 1)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/tts", "/v1/audio/speech"]), body=BODIES)
async def test_no_malformed_body_gets_a_5xx(path: str, body: bytes) -> None:
    async with client() as c:
        r = await c.post(path, content=body, headers={"content-type": "application/json"})
    # 503 is no 5xx for the body: it is the one answer for real text when no voice exists here.
    if r.status_code == 503:
        assert r.json()["error"]["code"] == "speech_unavailable"
    else:
        assert r.status_code < 500, (body, r.text)


# ---- real sockets: slow headers and bodies ---------------------------------------------------------


@contextlib.asynccontextmanager
async def served(header_timeout_s: float, **settings: object) -> AsyncIterator[int]:
    cfg = replace(config(), **settings)  # type: ignore[arg-type]
    async with Hub(cfg, VoiceMap.load(None, "maya"), {}, link=MemoryLink(GW)) as hub:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(hub), http=deadlined_h11(header_timeout_s), log_level="warning", lifespan="off"
            )
        )
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            async with asyncio.timeout(T):
                while not server.started:  # noqa: ASYNC110 - uvicorn has no started event
                    await asyncio.sleep(0.01)
            yield sock.getsockname()[1]
        finally:
            server.should_exit = True
            await task


async def closed_within(reader: asyncio.StreamReader, within_s: float) -> bytes:
    async with asyncio.timeout(within_s):
        return await reader.read()


async def test_headers_that_trickle_are_cut_at_their_deadline() -> None:
    async with served(header_timeout_s=0.3) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /tts HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        assert await closed_within(reader, T) == b""  # closed, nothing answered
        writer.close()


async def test_a_body_that_stalls_is_answered_408_and_closed() -> None:
    async with served(header_timeout_s=T, body_timeout_s=0.3) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /tts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        answer = await closed_within(reader, T)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")


async def test_a_keep_alive_connection_gets_the_header_deadline_again() -> None:
    async with served(header_timeout_s=0.5) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(T):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        writer.write(b"GET /hea")
        await writer.drain()
        rest = await closed_within(reader, T)
        writer.close()
    assert b"HTTP/1.1" not in rest.split(b"\r\n\r\n", 1)[-1]


# ---- failing closed ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "starts"),
    [
        ({"SESAME_HOST": "0.0.0.0"}, False),
        ({"SESAME_HOST": "::"}, False),
        ({"SESAME_HOST": "gateway.example"}, False),
        ({"SESAME_HOST": "0.0.0.0", "SESAME_AUTH_TOKEN": ""}, False),  # compose's old `${VAR:-}`
        ({"SESAME_HOST": "0.0.0.0", "SESAME_AUTH_TOKEN": TOKEN}, True),
        ({"SESAME_HOST": "0.0.0.0", "SESAME_ALLOW_OPEN": "1"}, True),
        ({"SESAME_HOST": "127.0.0.1"}, True),
        ({"SESAME_HOST": "::1"}, True),
        ({"SESAME_HOST": "localhost"}, True),
    ],
)
def test_the_gateway_refuses_to_serve_beyond_loopback_without_a_token(
    env: dict[str, str], starts: bool
) -> None:
    if starts:
        GatewayConfig.from_env(env)
    else:
        with pytest.raises(ConfigError, match="SESAME_AUTH_TOKEN"):
            GatewayConfig.from_env(env)


@pytest.mark.parametrize(
    ("origin", "allowed"), [("https://maya.example", True), ("https://evil.example", False), (None, False)]
)
async def test_websocket_origin_is_checked_when_set(origin: str | None, allowed: bool) -> None:
    reached = False

    async def app(scope: object, receive: object, send: object) -> None:
        nonlocal reached
        reached = True

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    guard = Guard(app, GuardSettings(allowed_origins=("https://maya.example",)), lambda _: None)  # type: ignore[arg-type]
    headers = [(b"origin", origin.encode())] if origin else []
    await guard({"type": "websocket", "path": "/ws", "headers": headers}, Channel([]), send)
    assert reached is allowed
    assert (sent == []) is allowed


async def test_a_websocket_from_another_origin_is_refused_on_the_wire() -> None:
    async with served(header_timeout_s=T, allowed_origins=("https://maya.example",)) as port:
        url = f"ws://127.0.0.1:{port}/ws"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, origin=Origin("https://evil.example")):
                pass
        assert refused.value.response.status_code == 403
        async with connect(url, origin=Origin("https://maya.example")) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"


@pytest.mark.parametrize(
    ("peer", "identity"),
    [
        (("203.0.113.7", 5000), "addr:203.0.113.7"),
        (("10.1.0.1", 1), "addr:10.1.0.1"),
        (("127.0.0.1", 5000), None),  # this host itself, with no forwarded address: no quota
        (("::1", 5000), None),
        (None, "addr:unknown"),
    ],
)
def test_client_identity_is_the_address(peer: tuple[str, int] | None, identity: str | None) -> None:
    assert client_identity(peer) == identity
