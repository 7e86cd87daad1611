"""Build a Bark checkpoint with random weights, loadable offline through ``from_pretrained``.

Pretrained Bark weights cannot be downloaded here, so development and tests build their own
checkpoint: the real architecture (semantic, coarse and fine transformers, EnCodec decoder) with
the real vocabularies and token offsets, seeded random weights, a small character-level BERT
tokenizer and random speaker prompts in the layout ``BarkProcessor`` uses. Every stage of the real
pipeline runs on it; its audio is noise, but noise that follows the tokens: see
``_token_driven_codec``.

``--size dev`` (default) is a few MB and generates in well under a second on a laptop CPU;
``--size bark-small`` has bark-small's sizes (12 layers, 12 heads, 768 hidden, 24 kHz EnCodec) for
benchmarks of real-sized compute.

Quirks of transformers 5.24 handled here:
- ``BarkGenerationConfig`` cannot go through ``save_pretrained`` (it is not a plain
  GenerationConfig), so the model is saved with a plain one and ``generation_config.json`` is then
  written from ``BarkGenerationConfig(...).to_dict()``.
- The semantic input vocabulary must be 129 600 so the real text-token offset (10 048) and the
  text pad / infer tokens index inside it; ``block_size`` stays 1024 (Bark's positions).
"""

from __future__ import annotations

import argparse
import json
import string
from pathlib import Path
from typing import Any, Literal

import numpy as np

Codec = Literal["tiny", "default"]

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SPEAKER_PRESETS = [f"v2/en_speaker_{i}" for i in range(10)]
SEMANTIC_VOCAB = 10_000
CODEBOOK_SIZE = 1024
FORMAT = 2  # bumped when the builder's output changes (2: token-driven codec); see dev_model.json
MARKER = "dev_model.json"


def _vocab() -> list[str]:
    chars = list(string.ascii_letters + string.digits + string.punctuation)
    pieces = ["##" + c for c in string.ascii_letters + string.digits]
    return SPECIAL_TOKENS + chars + pieces


def _write_tokenizer(out: Path) -> None:
    from transformers import BertTokenizer

    vocab_path = out / "vocab.txt"
    vocab_path.write_text("\n".join(_vocab()) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(vocab_path), do_lower_case=False)
    tokenizer.save_pretrained(str(out))


def _write_speaker_prompts(out: Path, seed: int, prompt_s: float = 0.6) -> None:
    """Random speaker prompts in BarkProcessor's layout (speaker_embeddings_path.json + .npy files)."""
    rng = np.random.default_rng(seed + 1)
    n_semantic = max(4, int(prompt_s * 49.9))
    n_acoustic = max(4, int(prompt_s * 75))
    table: dict[str, object] = {"repo_or_path": "."}
    folder = out / "speaker_embeddings" / "v2"
    folder.mkdir(parents=True, exist_ok=True)
    for preset in SPEAKER_PRESETS:
        arrays = {
            "semantic_prompt": rng.integers(0, SEMANTIC_VOCAB, size=n_semantic, dtype=np.int64),
            "coarse_prompt": rng.integers(0, CODEBOOK_SIZE, size=(2, n_acoustic), dtype=np.int64),
            "fine_prompt": rng.integers(0, CODEBOOK_SIZE, size=(8, n_acoustic), dtype=np.int64),
        }
        paths: dict[str, str] = {}
        for key, array in arrays.items():
            rel = f"speaker_embeddings/{preset}_{key}.npy"
            np.save(out / rel, array, allow_pickle=False)
            paths[key] = rel
        table[preset] = paths
    (out / "speaker_embeddings_path.json").write_text(json.dumps(table, indent=1), encoding="utf-8")


def build_dev_model(
    out_dir: Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    seed: int = 0,
    codec: Codec = "tiny",
) -> Path:
    """Write a random-weight Bark checkpoint to ``out_dir`` and return it. Deterministic in ``seed``."""
    import torch
    from transformers import (
        BarkCoarseConfig,
        BarkConfig,
        BarkFineConfig,
        BarkModel,
        BarkSemanticConfig,
        EncodecConfig,
        GenerationConfig,
    )
    from transformers.models.bark.generation_configuration_bark import BarkGenerationConfig

    from synth_worker.bark.loading import quiet_transformers

    quiet_transformers()
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    common: dict[str, Any] = {
        "block_size": 1024,
        "num_layers": layers,
        "num_heads": heads,
        "hidden_size": hidden,
        "bias": False,
    }
    semantic = BarkSemanticConfig(input_vocab_size=129_600, output_vocab_size=10_048, **common)
    coarse = BarkCoarseConfig(input_vocab_size=12_096, output_vocab_size=12_096, **common)
    fine = BarkFineConfig(
        input_vocab_size=1_056, output_vocab_size=1_056, n_codes_total=8, n_codes_given=1, **common
    )
    if codec == "tiny":
        codec_config = EncodecConfig(
            hidden_size=32, num_filters=4, num_lstm_layers=1, codebook_size=CODEBOOK_SIZE
        )
    else:
        codec_config = EncodecConfig()
    config = BarkConfig(
        semantic_config=semantic.to_dict(),
        coarse_acoustics_config=coarse.to_dict(),
        fine_acoustics_config=fine.to_dict(),
        codec_config=codec_config.to_dict(),
    )

    torch.manual_seed(seed)
    model = BarkModel(config)
    _token_driven_codec(model.codec_model.eval(), seed)
    model.generation_config = GenerationConfig()  # type: ignore[no-untyped-call]
    model.save_pretrained(str(out))
    generation = BarkGenerationConfig(
        semantic_config={}, coarse_acoustics_config={}, fine_acoustics_config={}, codebook_size=CODEBOOK_SIZE
    )
    (out / "generation_config.json").write_text(json.dumps(generation.to_dict(), indent=1), encoding="utf-8")  # type: ignore[no-untyped-call]

    _write_tokenizer(out)
    _write_speaker_prompts(out, seed)
    marker = {
        "format": FORMAT,
        "seed": seed,
        "hidden": hidden,
        "layers": layers,
        "heads": heads,
        "codec": codec,
    }
    (out / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
    return out


def built_by_this_builder(path: Path) -> bool:
    """Whether ``path`` holds a checkpoint written by this version of the builder."""
    try:
        marker = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format") == FORMAT


CODEC_LEVEL_DBFS = -24.0  # the dev codec's output level for random tokens (speech-like, no clipping)


def _token_driven_codec(codec: Any, seed: int) -> None:
    """Make a random EnCodec's audio a function of its tokens, as a trained one's is.

    A freshly initialised EnCodec has all-zero codebook embeddings (``quantizer.layers[*].codebook
    .embed`` are buffers that ``_init_weights`` never touches), so every token decodes to the same
    zero vector and any tokens of a given length give the same waveform; and its decoder's random
    biases add a constant offset about 40 dB above whatever the tokens contribute. Here: seeded
    standard-normal codebooks (their EMA statistics made consistent with them), zero decoder biases
    (a trained codec's output has no such offset), and the last convolution's gain set so that
    random tokens decode to about ``CODEC_LEVEL_DBFS``. Two unrelated token sequences then decode to
    uncorrelated audio, and changing one frame changes the audio around it.
    """
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed + 2)
    with torch.no_grad():
        for layer in codec.quantizer.layers:
            book = layer.codebook
            book.embed.copy_(torch.randn(book.embed.shape, generator=gen))
            book.embed_avg.copy_(book.embed)
            book.cluster_size.fill_(1.0)
        for name, param in codec.decoder.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("bias"):
                param.zero_()
        codes = torch.randint(
            0, codec.config.codebook_size, (len(codec.quantizer.layers), 1, 150), generator=gen
        )
        rms = float(codec.decoder(codec.quantizer.decode(codes)).pow(2).mean().sqrt())
        gain = codec.decoder.layers[-1].conv.parametrizations.weight.original0
        gain.mul_(10 ** (CODEC_LEVEL_DBFS / 20) / rms)


SIZES: dict[str, dict[str, int | str]] = {
    "dev": {"hidden": 32, "layers": 2, "heads": 2, "codec": "tiny"},
    "bark-small": {"hidden": 768, "layers": 12, "heads": 12, "codec": "default"},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sesame-voice build-dev-model",
        description="Write a random-weight Bark checkpoint (loadable with BarkModel.from_pretrained) to DIR.",
    )
    parser.add_argument("dir", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="dev")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from broker import logs

    logs.configure("INFO")
    log = logs.get("sesame.devmodel")
    size = SIZES[args.size]
    codec: Codec = "tiny" if size["codec"] == "tiny" else "default"
    out = build_dev_model(
        args.dir,
        hidden=int(size["hidden"]),
        layers=int(size["layers"]),
        heads=int(size["heads"]),
        seed=args.seed,
        codec=codec,
    )
    log.info("dev_model_written", path=str(out), size=args.size, seed=args.seed)
    return 0
