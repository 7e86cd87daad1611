"""The dev checkpoint builder: loads through the same from_pretrained path as production."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, BarkModel

from broker.audio import rms_dbfs
from synth_worker.devmodel import build_dev_model, built_by_this_builder, main


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
    assert built_by_this_builder(tmp_path / "cli") and not built_by_this_builder(tmp_path)


def _snr_db(ref: np.ndarray, other: np.ndarray) -> float:
    noise = float(np.sum((ref.astype(np.float64) - other) ** 2))
    return (
        float("inf")
        if noise == 0
        else 10 * float(np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / noise))
    )


def test_dev_codec_audio_follows_its_tokens(dev_model_dir: Path) -> None:
    """Random codebooks (not EnCodec's initial zeros): different tokens, different audio."""
    model = BarkModel.from_pretrained(str(dev_model_dir), local_files_only=True).eval()
    gen = torch.Generator().manual_seed(5)
    a = torch.randint(0, 1024, (1, 8, 75), generator=gen)
    b = torch.randint(0, 1024, (1, 8, 75), generator=gen)
    one = a.clone()
    one[:, :, 40] = b[:, :, 40]  # one frame of eight codes changed

    def decode(codes: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(model.codec_decode(codes, torch.tensor([75]))[0].numpy(), dtype=np.float32)

    wa, wb, w1 = decode(a), decode(b), decode(one)
    assert np.array_equal(wa, decode(a.clone()))
    assert -40.0 < rms_dbfs(wa) < -10.0 and float(np.max(np.abs(wa))) < 1.0
    assert abs(float(np.mean(wa))) < 0.1 * float(np.std(wa))  # no constant offset drowning the tokens
    assert _snr_db(wa, wb) < 6.0  # unrelated tokens: unrelated audio
    changed = np.flatnonzero(np.abs(wa - w1) > 1e-4 * float(np.max(np.abs(wa))))
    assert changed.size > 320 and changed.min() >= 39 * 320  # from frame 40 on (a causal codec), not before
