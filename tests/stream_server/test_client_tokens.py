"""Clients' own tokens (SESAME_CLIENT_TOKENS, SESAME_CLIENT_TOKENS_FILE): a token names its client,
whose fair share (core/admission.py) is then its own wherever it connects from; the shared
SESAME_AUTH_TOKEN still works and leaves the address to tell clients apart. Tokens never reach a log
or an error message; names do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from websockets.asyncio.client import connect

from broker.errors import ConfigError
from stream_server.config import GatewayConfig
from stream_server.http.auth import Holder, Tokens, client_identity
from tests.stream_server.test_guard import TOKEN, client, served

ALICE = "alice-own-token-0123456789"
BOB = "bob-own-token-9876543210"


def test_tokens_from_the_list_and_the_file(tmp_path: Path) -> None:
    file = tmp_path / "clients"
    file.write_text("# name:token, one a line\n\ncarol:carol-token-abc\n  dave : dave-token-xyz  \n")
    env = {"SESAME_CLIENT_TOKENS": f"alice:{ALICE}, bob:{BOB}", "SESAME_CLIENT_TOKENS_FILE": str(file)}
    cfg = GatewayConfig.from_env(env)
    assert cfg.client_tokens == (
        ("alice", ALICE),
        ("bob", BOB),
        ("carol", "carol-token-abc"),
        ("dave", "dave-token-xyz"),
    )
    assert ALICE not in repr(cfg) and "carol-token" not in repr(cfg)


@pytest.mark.parametrize(
    "env",
    [
        {"SESAME_CLIENT_TOKENS": f"alice{ALICE}"},  # no colon
        {"SESAME_CLIENT_TOKENS": f":{ALICE}"},  # no name
        {"SESAME_CLIENT_TOKENS": "alice:"},  # no token
        {"SESAME_CLIENT_TOKENS": f"al ice:{ALICE}"},  # a space in the name
        {"SESAME_CLIENT_TOKENS": f"alice:{ALICE} x"},  # a space in the token
        {"SESAME_CLIENT_TOKENS": f"alice:{ALICE},alice:{BOB}"},  # a name twice
        {"SESAME_CLIENT_TOKENS": f"alice:{ALICE},bob:{ALICE}"},  # a token twice
        {"SESAME_CLIENT_TOKENS": f"alice:{ALICE}", "SESAME_AUTH_TOKEN": ALICE},  # the shared one
        {"SESAME_CLIENT_TOKENS": f"alice:{ALICE}", "SESAME_READ_TOKEN": ALICE},  # the read-only one
        {"SESAME_CLIENT_TOKENS_FILE": "/nonexistent/clients"},
    ],
)
def test_a_bad_entry_is_refused_without_showing_a_token(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as refused:
        GatewayConfig.from_env(env)
    assert ALICE not in str(refused.value) and BOB not in str(refused.value)
    assert "SESAME_CLIENT_TOKENS" in str(refused.value)


def test_clients_own_tokens_are_enough_to_serve_beyond_loopback() -> None:
    cfg = GatewayConfig.from_env({"SESAME_HOST": "0.0.0.0", "SESAME_CLIENT_TOKENS": f"alice:{ALICE}"})
    assert Tokens.of(cfg).required


@pytest.mark.parametrize(
    ("headers", "query", "holder"),
    [
        ({"authorization": f"Bearer {TOKEN}"}, None, Holder()),
        ({"authorization": f"Bearer {ALICE}"}, None, Holder("alice")),
        ({}, BOB, Holder("bob")),
        ({"authorization": "Bearer nope"}, None, None),
        ({}, None, None),
        ({"authorization": f"Bearer {ALICE}x"}, None, None),
    ],
)
def test_the_holder_of_a_token(headers: dict[str, str], query: str | None, holder: Holder | None) -> None:
    tokens = Tokens(TOKEN, (("alice", ALICE), ("bob", BOB)))
    assert tokens.holder(headers, query) == holder


def test_no_tokens_configured_everyone_may_speak_as_their_address() -> None:
    assert Tokens().holder({}) == Holder()
    assert not Tokens().required


def test_a_clients_own_token_is_its_identity_wherever_it_comes_from() -> None:
    assert client_identity(("203.0.113.7", 1), Holder("alice")) == "token:alice"
    assert client_identity(("127.0.0.1", 1), Holder("alice")) == "token:alice"
    assert client_identity(("203.0.113.7", 1), Holder()) == "addr:203.0.113.7"


async def test_two_clients_behind_one_address_have_their_own_quotas_and_no_token_is_logged() -> None:
    """One session each (SESAME_CLIENT_MAX_SESSIONS=1): alice and bob, from the same address, each
    get theirs; alice's second is refused ``overloaded``, logged by her name, never her token."""
    tokens = (("alice", ALICE), ("bob", BOB))
    async with served(
        header_timeout_s=10.0, auth_token=TOKEN, client_tokens=tokens, client_max_sessions=1
    ) as port:
        url = f"ws://127.0.0.1:{port}/ws"

        def as_(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        with capture_logs() as logs:
            async with (
                connect(url, additional_headers=as_(ALICE)) as a1,
                connect(url, additional_headers=as_(BOB)) as b1,
                connect(url, additional_headers=as_(ALICE)) as a2,
                connect(url, additional_headers=as_(TOKEN)) as shared,
            ):
                first = [json.loads(await ws.recv()) for ws in (a1, b1, a2, shared)]
        assert [m["type"] for m in first] == ["ready", "ready", "error", "ready"]
        assert first[2]["code"] == "overloaded" and first[2]["retry_after_ms"] > 0
        refused = [e for e in logs if e.get("event") == "session_refused"]
        assert [e.get("client") for e in refused] == ["token:alice"]
        text = json.dumps(logs, default=str)
        assert ALICE not in text and BOB not in text and TOKEN not in text


@pytest.mark.parametrize("shared", [TOKEN, None])
async def test_a_clients_token_speaks_but_does_not_see_the_service(shared: str | None) -> None:
    """With or without a shared token beside it: /tts takes alice's token, /metrics does not (with
    only clients' tokens configured, the status endpoints are closed, not open)."""
    async with client(auth_token=shared, client_tokens=(("alice", ALICE),)) as c:
        bearer = {"authorization": f"Bearer {ALICE}"}
        spoke = await c.post("/tts", json={"text": "Hello."}, headers=bearer)
        assert spoke.status_code != 401
        assert (await c.post("/tts", json={"text": "Hello."})).status_code == 401
        assert (await c.get("/metrics", headers=bearer)).status_code == 401
        assert (await c.get("/health")).status_code == 200
