"""A small protocol-v1 websocket client for tests: collects a turn's messages and audio.

Every frame is decoded strictly by clients/protocol.py (a frame the protocol does not have fails
the test); messages are kept as their wire dicts so tests read them as a client would."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import numpy as np
from websockets.asyncio.client import ClientConnection

from broker.audio import AudioFrame, from_pcm16
from clients import protocol


@dataclass
class Turn:
    messages: list[dict[str, object]] = field(default_factory=list)
    frames: list[AudioFrame] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, object]]:
        return [m for m in self.messages if m["type"] == kind]

    def audio(self, seq: int) -> np.ndarray:
        pcm = b"".join(f.payload for f in self.frames if f.seq == seq)
        return from_pcm16(pcm)


async def collect(ws: ClientConnection, timeout: float, until: str = "turn_end") -> Turn:  # noqa: ASYNC109
    turn = Turn()
    async with asyncio.timeout(timeout):
        while True:
            msg = protocol.decode(await ws.recv())
            if isinstance(msg, AudioFrame):
                turn.frames.append(msg)
                continue
            turn.messages.append(msg.to_dict())
            if msg.type == until:
                return turn


async def send(ws: ClientConnection, **msg: object) -> None:
    await ws.send(json.dumps(msg))
