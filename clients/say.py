"""``sesame-voice say``: speak text from the command line through a running gateway.

    sesame-voice say "Hello there. How are you?" -o hi.wav
    llm "tell me a story" | sesame-voice say            # speaks while the LLM writes
    echo "Hello there." | sesame-voice say -o hi.mp3

The text is the argument, or standard input read as it arrives and streamed to the gateway as it
comes (so the first sentence is spoken before the last is written). The audio goes to ``-o FILE``
(WAV, MP3, FLAC or OGG/Opus, from the suffix or ``--format``; written sentence by sentence), or
else to the default audio device through the first player found on PATH (``pw-play``, ``paplay``,
``aplay``, ``ffplay``). Progress goes to stderr: one line per sentence with the engine that spoke
it. Exit status: 0 when every sentence was spoken; 1 when some text could not be spoken by any
voice (that text is printed on stderr); 2 for bad arguments or input; 3 when the gateway cannot be
reached.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import os
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

import numpy as np

from broker.errors import ProtocolError

from .endpoint import BadUrl, configured_url, gateway_urls
from .voice_client import VoiceClient
from .voice_events import (
    ConnectionLost,
    FellBack,
    Reconnecting,
    SentenceAudio,
    SentenceFailed,
    TurnCancelled,
    TurnEnded,
)

FORMATS = {
    "wav": ("WAV", "PCM_16"),
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "flac": ("FLAC", "PCM_16"),
    "ogg": ("OGG", "OPUS"),
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
PLAYERS = (
    ("pw-play", ["--rate={rate}", "--channels=1", "--format=s16", "-"]),
    ("paplay", ["--raw", "--rate={rate}", "--channels=1", "--format=s16le"]),
    ("aplay", ["-q", "-t", "raw", "-f", "S16_LE", "-r", "{rate}", "-c", "1", "-"]),
    (
        "ffplay",
        [
            "-nodisp",
            "-autoexit",
            "-loglevel",
            "quiet",
            "-f",
            "s16le",
            "-ar",
            "{rate}",
            "-ch_layout",
            "mono",
            "-i",
            "-",
        ],
    ),
)


class SayError(Exception):
    """A bad argument or input (exit 2)."""


@dataclass(frozen=True, slots=True)
class SayConfig:
    url: str
    text: str | None  # None: read standard input
    output: Path | None  # None: play
    format: str
    voice: str | None
    sample_rate: int
    token: str | None
    quiet: bool


@dataclass(slots=True)
class SayOutcome:
    spoken: int = 0
    samples: int = 0
    undelivered: list[str] | None = None


class Sink:
    """Where the audio goes: a file written sentence by sentence, or a player's stdin."""

    async def write(self, pcm: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class FileSink(Sink):
    def __init__(self, path: Path, fmt: str, sample_rate: int) -> None:
        import soundfile as sf

        container, subtype = FORMATS[fmt]
        self._file = sf.SoundFile(
            path, "w", samplerate=sample_rate, channels=1, format=container, subtype=subtype
        )

    async def write(self, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32767.0
        self._file.write(samples)

    async def close(self) -> None:
        self._file.close()


class PlayerSink(Sink):
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    @classmethod
    async def start(cls, sample_rate: int) -> PlayerSink:
        for name, args in PLAYERS:
            path = shutil.which(name)
            if path is not None:
                argv = [a.format(rate=sample_rate) for a in args]
                proc = await asyncio.create_subprocess_exec(
                    path, *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
                )
                return cls(proc)
        raise SayError("no audio player found (pw-play, paplay, aplay or ffplay): use -o FILE")

    async def write(self, pcm: bytes) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(pcm)
        await self._proc.stdin.drain()

    async def close(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        await self._proc.wait()


async def stdin_chunks(stream: BinaryIO) -> AsyncIterator[str]:
    """Standard input as it arrives (a pipe gives what the writer flushed), decoded as UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    read = getattr(stream, "read1", stream.read)
    while True:
        data = await asyncio.to_thread(read, 4096)
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise SayError(f"standard input is not UTF-8: {exc}") from exc
        if text:
            yield text
        if not data:
            return


async def say(config: SayConfig, stdin: BinaryIO, progress: TextIO) -> SayOutcome:
    sink: Sink = (
        FileSink(config.output, config.format, config.sample_rate)
        if config.output is not None
        else await PlayerSink.start(config.sample_rate)
    )
    outcome = SayOutcome(undelivered=[])
    try:
        async with VoiceClient(
            config.url, voice=config.voice, sample_rate=config.sample_rate, token=config.token
        ) as client:
            send = (
                client.speak(config.text) if config.text is not None else client.stream(stdin_chunks(stdin))
            )
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(send, name="say-send")
                    tg.create_task(_listen(client, sink, outcome, progress, config.quiet), name="say-listen")
            except BaseExceptionGroup as group:
                raise _first(group) from None
    finally:
        await sink.close()
    return outcome


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def _listen(
    client: VoiceClient, sink: Sink, outcome: SayOutcome, progress: TextIO, quiet: bool
) -> None:
    assert outcome.undelivered is not None
    async for event in client.events():
        match event:
            case SentenceAudio(seq=seq, text=text, engine=engine, audio=pcm, sample_rate=rate):
                await sink.write(pcm)
                outcome.spoken += 1
                outcome.samples += len(pcm) // 2
                if not quiet:
                    seconds = len(pcm) / 2 / max(rate, 1)
                    print(f"[{seq + 1}] {engine:<10} {seconds:5.1f} s  {text}", file=progress, flush=True)
            case SentenceFailed(code=code, message=message, text=text):
                if text is None:
                    raise SayError(f"{code}: {message}")
                outcome.undelivered.append(text)
                print(f"[!] not spoken ({code}): {text}", file=progress, flush=True)
            case FellBack(seq=seq, from_engine=f, to_engine=t, reason=reason) if not quiet:
                print(f"    sentence {seq + 1}: {f} -> {t} ({reason})", file=progress, flush=True)
            case Reconnecting(attempt=attempt, close_code=code) if not quiet:
                print(f"    reconnecting (attempt {attempt}, close code {code})", file=progress, flush=True)
            case TurnEnded() | TurnCancelled():
                return


def parse(argv: list[str], environ: dict[str, str]) -> SayConfig:
    parser = argparse.ArgumentParser(prog="sesame-voice say", description=__doc__.split("\n\n")[0])
    parser.add_argument("text", nargs="?", help="text to speak (default: read standard input as it arrives)")
    parser.add_argument("-o", "--output", type=Path, help="write audio to FILE instead of playing it")
    parser.add_argument("--format", choices=sorted(FORMATS), help="file format (default: from the suffix)")
    parser.add_argument("--voice", help="voice name (GET /v1/audio/voices lists them)")
    parser.add_argument("--sample-rate", type=int, default=24_000, help="Hz (default 24000)")
    parser.add_argument(
        "--url",
        default=configured_url(environ),
        help="the gateway: an http(s) base or a ws(s) URL (default: SESAME_URL, else %(default)s)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    a = parser.parse_args(argv)
    fmt = a.format
    if a.output is not None and fmt is None:
        fmt = a.output.suffix.lstrip(".").lower()
        if fmt not in FORMATS:
            raise SayError(
                f"cannot tell the format of {a.output}: use --format ({', '.join(sorted(FORMATS))})"
            )
    if fmt == "ogg" and a.sample_rate not in OPUS_RATES:
        raise SayError("ogg (Opus) needs --sample-rate 8000, 12000, 16000, 24000 or 48000")
    try:
        url = gateway_urls(a.url).ws
    except BadUrl as exc:
        raise SayError(str(exc)) from None
    text = None if a.text in (None, "-") else a.text
    if text is not None and not text.strip():
        raise SayError("nothing to say: the text is empty")
    return SayConfig(
        url=url,
        text=text,
        output=a.output,
        format=fmt or "wav",
        voice=a.voice,
        sample_rate=a.sample_rate,
        token=environ.get("SESAME_AUTH_TOKEN"),
        quiet=a.quiet,
    )


def main(argv: list[str]) -> int:
    try:
        config = parse(argv, dict(os.environ))
        outcome = asyncio.run(say(config, sys.stdin.buffer, sys.stderr))
    except (SayError, ProtocolError) as exc:
        print(f"sesame-voice say: {exc}", file=sys.stderr)
        return 2
    except ConnectionLost as exc:
        print(f"sesame-voice say: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    assert outcome.undelivered is not None
    if outcome.undelivered:
        print("sesame-voice say: no voice could speak:", file=sys.stderr)
        for text in outcome.undelivered:
            print(text, file=sys.stderr)
        return 1
    if outcome.spoken == 0:
        print("sesame-voice say: nothing was spoken", file=sys.stderr)
        return 1
    return 0
