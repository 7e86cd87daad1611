"""Stream an LLM's tokens to sesame-voice and save each sentence as it is spoken.

    python docs/examples/voice_client_example.py [ws://127.0.0.1:8000/ws] [OUT_DIR]

Run it from the repository root with the service up (`make up`). The "LLM" here is a generator that
yields a reply a few characters at a time, as a real one does.
"""

from __future__ import annotations

import asyncio
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

from clients.voice_client import VoiceClient
from clients.voice_events import FellBack, SentenceAudio, SentenceFailed, TurnEnded

REPLY = "Hello, I'm Maya. The weather today is mild. Would you like a reminder for your walk?"


async def llm_tokens() -> AsyncIterator[str]:
    for i in range(0, len(REPLY), 4):
        await asyncio.sleep(0.02)  # the pace of a model writing
        yield REPLY[i : i + 4]


def save(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


async def main(url: str, out_dir: Path) -> int:
    failed = 0
    async with VoiceClient(url, voice="maya") as voice:
        sender = asyncio.create_task(voice.stream(llm_tokens()))  # text goes in while audio comes out
        async for event in voice.events():
            match event:
                case SentenceAudio(seq=seq, text=text, engine=engine, audio=pcm, sample_rate=rate):
                    path = out_dir / f"sentence-{seq}.wav"
                    await asyncio.to_thread(save, path, pcm, rate)
                    print(f"{seq}: {engine:<10} {text!r} -> {path}")
                case FellBack(seq=seq, from_engine=f, to_engine=t):
                    print(f"{seq}: fell back {f} -> {t}")
                case SentenceFailed(text=text):
                    failed += 1
                    print(f"not spoken: {text!r}")
                case TurnEnded():
                    break
        await sender
    return 1 if failed else 0


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8000/ws"
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("spoken")
    out.mkdir(parents=True, exist_ok=True)
    sys.exit(asyncio.run(main(url, out)))
