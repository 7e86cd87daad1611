"""The dev checkpoint builder: loads through the same from_pretrained path as production."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from transformers import AutoTokenizer, BarkModel

from synth_worker.devmodel import build_dev_model, main


def test_dev_model_loads_with_from_pretrained_offline(dev_model_dir: Path) -> None:
    model = BarkModel.from_pretrained(str(dev_model_dir), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(dev_model_dir), local_files_only=True)
    assert model.config.semantic_config.input_vocab_size == 129_600
    assert model.config.semantic_config.block_size == 1024
    assert model.generation_config.semantic_config["text_encoding_offset"] == 10_048
    assert model.codec_model.config.sampling_rate == 24_000
    ids = tokenizer("Hello there.", add_special_tokens=False)["input_ids"]
    assert len(ids) >= 5 and tokenizer.unk_token_id not in ids
    table = json.loads((dev_model_dir / "speaker_embeddings_path.json").read_text())
    assert all((dev_model_dir / p).is_file() for p in table["v2/en_speaker_9"].values())


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_builder_is_deterministic_in_its_seed(tmp_path: Path, dev_model_dir: Path) -> None:
    again = build_dev_model(tmp_path / "again", hidden=16, layers=1, heads=2, seed=0)
    same = build_dev_model(tmp_path / "same", hidden=16, layers=1, heads=2, seed=0)
    other = build_dev_model(tmp_path / "other", hidden=16, layers=1, heads=2, seed=1)
    assert _digest(again) == _digest(same)
    assert _digest(again) != _digest(other)


def test_cli_writes_a_checkpoint(tmp_path: Path) -> None:
    assert main([str(tmp_path / "cli"), "--seed", "3"]) == 0
    assert (tmp_path / "cli" / "config.json").is_file() and (tmp_path / "cli" / "vocab.txt").is_file()
