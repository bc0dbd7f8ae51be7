"""A small random SONAR in the official formats, for demos and tests."""

from __future__ import annotations

from pathlib import Path

import torch

from ..tiny import randomise, read_marker, write_marker
from .encoders import SPEECH_LANGUAGES, SonarSpeechEncoder, SonarTextEncoder

TINY_SEED = 4321


def build_tiny(path: Path, seed: int = TINY_SEED, dim: int = 64, layers: int = 3, heads: int = 4) -> Path:
    """Write a small random SONAR in the official formats: a fairseq2 text encoder, fairseq1 speech encoders
    (3 pooler layers for English, 6 for the rest, one file shared by all non-English languages) and a
    character-level NLLB tokenizer over the demo corpus. Every weight, BatchNorm statistics included, is random."""
    from transformers import NllbTokenizer

    from ... import languages as langs
    from ...data.demo import corpus

    chars = sorted({ch for lines in corpus().values() for line in lines for ch in line if not ch.isspace()})
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for token in ["▁"] + chars:
        vocab.setdefault(token, len(vocab))
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = NllbTokenizer(vocab=vocab, merges=[], src_lang="eng_Latn")
    tokenizer.save_pretrained(path / "tokenizer")
    gen = torch.Generator().manual_seed(seed)
    hints = {"num_heads": heads}
    text = randomise(SonarTextEncoder(len(tokenizer), dim, layers, heads, 2 * dim), gen).eval()
    torch.save({"model": text.fairseq2_state(), "crossrep_config": hints}, path / "sonar_text_encoder.pt")
    speech = {}
    for name, pooler in (("eng", 3), ("other", 6)):
        model = randomise(SonarSpeechEncoder(dim, layers, heads, 2 * dim, 31, pooler, heads, 2 * dim, dim), gen)
        torch.save({"model": model.fairseq1_state(), "crossrep_config": hints}, path / f"spenc.{name}.pt")
    for iso in sorted(SPEECH_LANGUAGES & set(langs.STUDY)):
        speech[iso] = "spenc.eng.pt" if iso == "eng" else "spenc.other.pt"
    checkpoint = {"text": "sonar_text_encoder.pt", "tokenizer": "tokenizer", "speech": speech}
    write_marker(path, "SONAR", seed=seed, dim=dim, layers=layers, heads=heads, checkpoint=checkpoint)
    return path


def tiny_checkpoint(path: Path) -> dict:
    """The checkpoint mapping of a tiny build, its file names (relative in the marker) made absolute."""
    names = read_marker(path)["checkpoint"]
    return {"text": str(path / names["text"]), "tokenizer": str(path / names["tokenizer"]),
            "speech": {iso: str(path / name) for iso, name in names["speech"].items()}}
