"""Small random models for demos and tests: one randomiser, one cached, atomic builder."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

MARKER = "crossrep-tiny.json"  # written last: a folder without it is an unfinished build


def randomise(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Every floating parameter and persistent buffer drawn from `gen`: norm gains near 1, BatchNorm variances in
    [0.5, 1.5), other vectors small, matrices scaled by 1/sqrt(fan-in) so that activations stay of order one."""
    with torch.no_grad():
        for sub in module.modules():
            batch_norm = isinstance(sub, nn.modules.batchnorm._BatchNorm)
            norm = batch_norm or type(sub).__name__.endswith("Norm")
            tensors = list(sub.named_parameters(recurse=False)) + [
                (n, b) for n, b in sub.named_buffers(recurse=False) if n not in sub._non_persistent_buffers_set]
            for name, t in tensors:
                if not t.is_floating_point():
                    continue
                noise = torch.randn(t.shape, generator=gen)
                if name == "running_var":
                    t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
                elif norm and name == "weight":
                    t.copy_(1.0 + 0.2 * noise)
                elif t.dim() <= 1:
                    t.copy_(0.2 * noise)
                else:
                    t.copy_(noise / math.sqrt(t[0].numel()))
    return module


def cached(path: Path, build: Callable[[Path], object]) -> Path:
    """`path`, built by `build(folder)` unless a finished build is there. The build runs in a sibling temporary
    folder that is renamed into place, so an interrupted build leaves nothing that looks finished."""
    path = Path(path)
    if (path / MARKER).is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        build(work)
        if not (work / MARKER).is_file():
            raise RuntimeError(f"tiny-model builder for {path} wrote no {MARKER}")
        if not (path / MARKER).is_file():  # else another process finished first: its build is as good
            if path.exists():  # an unfinished earlier build: nothing of value in it
                shutil.rmtree(path)
            try:
                work.rename(path)
            except OSError:
                if not (path / MARKER).is_file():
                    raise
    finally:
        if work.exists():
            shutil.rmtree(work)
    return path


def write_marker(path: Path, what: str, **info) -> None:
    """The marker that says what a tiny folder is and how it was made (seed, sizes)."""
    text = json.dumps({"what": f"small random {what} built by crossrep for demos and tests; not a trained model",
                       **info}, indent=1)
    (Path(path) / MARKER).write_text(text)


def read_marker(path: Path) -> dict:
    return json.loads((Path(path) / MARKER).read_text())


def byte_bpe_tokenizer(special: list[str], vocab_size: int = 1500, pad: str | None = None):
    """A fast byte-level BPE tokenizer (GPT-2 / Qwen style: offsets, added special tokens) trained on crossrep's
    demo corpus, with `special` as added special tokens (the first one is also EOS, and PAD unless `pad`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from ..data.demo import corpus

    lines = [line for lines in corpus().values() for line in lines]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=special[0], pad_token=pad or special[0],
                                   additional_special_tokens=special[1:])


TEKKEN_PATTERN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?"
                  r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")


def write_tekken(path: Path, special: list[str], vocab_size: int = 1500) -> None:
    """A Mistral `tekken.json` (the format of Mistral's hub checkpoints): the ranks of the byte-level BPE trained
    on crossrep's demo corpus (the 256 bytes first, then merges in training order) after `special` (control
    tokens, ranks 0..)."""
    import base64

    from transformers.convert_slow_tokenizer import bytes_to_unicode

    trained = byte_bpe_tokenizer(["</s>"], vocab_size=vocab_size)
    decode = {v: k for k, v in bytes_to_unicode().items()}
    merged = sorted((i, t) for t, i in trained.backend_tokenizer.get_vocab(with_added_tokens=False).items()
                    if all(c in decode for c in t) and len(t) > 1)
    pieces = [bytes([b]) for b in range(256)] + [bytes(decode[c] for c in t) for _, t in merged]
    vocab = [{"rank": r, "token_bytes": base64.b64encode(b).decode(), "token_str": b.decode("utf-8", "replace")}
             for r, b in enumerate(pieces)]
    (Path(path) / "tekken.json").write_text(json.dumps({
        "config": {"pattern": TEKKEN_PATTERN, "num_vocab_tokens": len(vocab), "version": "v7",
                   "default_vocab_size": len(vocab) + len(special), "default_num_special_tokens": len(special)},
        "vocab": vocab, "special_tokens": [{"rank": r, "token_str": t, "is_control": True}
                                           for r, t in enumerate(special)]}))
