"""The operator's live tier switch on a real gateway: ``sesame-voice tiers`` and ``/admin/tiers``.

One gateway with a token and a Piper worker (so the worker's voice, ``piper``, is told apart from
the ``espeak-ng`` tier): ``tiers prefer espeak-ng`` sends the next turn there, shows in
``/api/status`` and as an incident; without the token the switch is refused; a gateway that
replaces this one (a reload or restart: a new process, same SESAME_STATE_DIR) keeps it; ``reset``
brings the workers back first. A gateway with no token configured refuses the switch altogether.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from broker.launcher import Mosquitto
from tests.conftest import T
from tests.support.localstack import REPO, Stack
from tests.wsclient import collect, send

TOKEN = "operator-token-0123456789"


def cli(url: str, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SESAME_AUTH_TOKEN"}
    if token is not None:
        env["SESAME_AUTH_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "sesame_voice.cli", "tiers", "--url", url, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=6 * T,
        check=False,
    )


def get_json(url: str) -> dict[str, Any]:
    # /api/status needs the token when auth is on (issue 19)
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=T) as r:
        data: dict[str, Any] = json.load(r)
    return data


async def engines(stack: Stack, text: str) -> list[str]:
    async with connect(f"{stack.ws_url}?token={TOKEN}") as ws:
        await ws.recv()
        await send(ws, type="speak", text=text)
        turn = await collect(ws, 6 * T)
    return [str(s["engine"]) for s in turn.of("sentence_start")]


async def test_prefer_disable_enable_reset_live_and_kept_by_the_next_gateway(tmp_path: Path) -> None:
    env = {
        "SESAME_TIERS": "workers,espeak-ng",
        "SESAME_CACHE_ENABLED": "false",
        "SESAME_AUTH_TOKEN": TOKEN,
        "SESAME_STATE_DIR": str(tmp_path / "state"),
    }
    with Mosquitto() as broker:
        with Stack(env, broker=broker, start_timeout=6 * T) as first:
            first.start_worker("w1", engine="piper", timeout=12 * T)
            assert await engines(first, "Before the switch.") == ["piper"]

            refused = cli(first.http_url, "prefer", "espeak-ng", token=None)
            assert refused.returncode == 1
            assert "401 unauthorized" in refused.stderr
            bad = cli(first.http_url, "prefer", "elevenlabs")
            assert bad.returncode == 1
            assert "400 unknown_tier" in bad.stderr

            done = cli(first.http_url, "prefer", "espeak-ng")
            assert done.returncode == 0, done.stderr
            assert "tiers tried now: espeak-ng, workers" in done.stdout
            assert await engines(first, "After the switch.") == ["espeak-ng"]
            status = get_json(f"{first.http_url}/api/status")
            assert status["tierSwitch"]["order"] == ["espeak-ng", "workers"]
            assert [t["operator"] for t in status["tiers"]] == ["preferred", ""]
            assert status["voice"]["speakingWith"] == "espeak-ng"
            assert any(
                i["kind"] == "operator" and "prefer espeak-ng" in i["text"] for i in status["incidents"]
            )
        with Stack(env, broker=broker, start_timeout=6 * T) as second:  # what a reload starts
            shown = cli(second.http_url)
            assert shown.returncode == 0, shown.stderr
            assert "tiers tried now: espeak-ng, workers" in shown.stdout
            second.start_worker("w2", engine="piper", timeout=12 * T)
            assert await engines(second, "Still switched.") == ["espeak-ng"]

            assert cli(second.http_url, "disable", "espeak-ng").returncode == 0
            assert await engines(second, "Espeak disabled.") == ["piper"]
            assert cli(second.http_url, "disable", "workers").returncode == 1  # the last enabled tier
            assert cli(second.http_url, "enable", "espeak-ng").returncode == 0
            reset = cli(second.http_url, "reset")
            assert reset.returncode == 0, reset.stderr
            assert "tiers tried now: workers, espeak-ng" in reset.stdout
            assert await engines(second, "Back to the workers.") == ["piper"]


def test_a_gateway_without_a_token_refuses_the_switch(tmp_path: Path) -> None:
    env = {"SESAME_TIERS": "workers,espeak-ng", "SESAME_STATE_DIR": str(tmp_path / "state")}
    with Stack(env, start_timeout=6 * T) as stack:
        done = cli(stack.http_url, "prefer", "espeak-ng")
        request = urllib.request.Request(
            f"{stack.http_url}/admin/tiers",
            json.dumps({"op": "prefer", "tier": "espeak-ng"}).encode(),
            {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"},
        )
        try:
            urllib.request.urlopen(request, timeout=T)
            code, body = 200, {}
        except urllib.error.HTTPError as exc:
            code, body = exc.code, json.loads(exc.read())
    assert done.returncode == 1
    assert "403 admin_needs_token" in done.stderr
    assert (code, body["error"]["code"]) == (403, "admin_needs_token")
    assert not (tmp_path / "state" / "tier-switch.json").exists()
