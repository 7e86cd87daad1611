"""Bark speaker presets are voices; an unknown voice names the known ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.errors import ProtocolError
from synth_worker.voices import VoiceMap, bark_preset, bark_preset_names


def test_every_bark_preset_is_a_voice_spoken_by_bark_with_a_stand_in_of_its_language() -> None:
    voices = VoiceMap()
    names = bark_preset_names()
    assert "v2/en_speaker_0" in names and "v2/zh_speaker_9" in names and len(names) == 130
    german = voices.get("v2/de_speaker_3")
    assert german.bark_speaker == "v2/de_speaker_3"
    assert german.engines == ("bark",)
    assert german.language == "de" and german.edge_voice.startswith("de-") and german.espeak_voice == "de"


@pytest.mark.parametrize(
    "name", ["v2/xx_speaker_1", "v2/en_speaker_10", "v2/en_speaker_", "en_speaker_1", "v1/en_speaker_1"]
)
def test_near_misses_are_not_presets(name: str) -> None:
    assert bark_preset(name) is None
    with pytest.raises(ProtocolError) as info:
        VoiceMap().get(name)
    assert info.value.code == "unknown_voice"
    assert "maya" in str(info.value) and "v2/" in str(info.value)


def test_all_lists_named_voices_first_then_presets_once() -> None:
    every = VoiceMap().all()
    names = [v.name for v in every]
    assert names[:2] == ["maya", "miles"]
    assert len(names) == len(set(names)) == 132
    assert VoiceMap().get("maya").engines == ("bark", "elevenlabs", "edge-tts", "piper", "espeak-ng")


def test_bark_engine_speaks_a_preset_voice_with_that_speaker_prompt(dev_model_dir: Path) -> None:
    # The checkpoint's prompts are looked up by that name (test_bark.py loads "v2/en_speaker_1").
    from synth_worker.bark.engine import BarkEngine
    from synth_worker.bark.settings import BarkSettings

    e = BarkEngine(BarkSettings(model=str(dev_model_dir)))
    try:
        assert e.speaker_for("v2/en_speaker_3") == "v2/en_speaker_3"
        assert e.speaker_for("v2/ja_speaker_0") == "v2/ja_speaker_0"
        with pytest.raises(ProtocolError):
            e.speaker_for("v2/en_speaker_42")
    finally:
        e.close()
