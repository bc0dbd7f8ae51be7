"""Synthetic activations with planted structure, written into a real activation store in place of a model's.

Each representation (language l, modality, point p) of sentence s is
    sqrt(a) z_s W + sqrt(b) u_{l,s} V + sqrt(1 - a - b) e N
with z_s a latent shared by every language and modality (the sentence's meaning), u_{l,s} a latent shared by
the two modalities of one language, e noise of low rank (N projects it) and W, V, N random per representation.
`a` and `b` come from a scenario function (lang, level, modality, point) -> (a, b), so each finding can be
planted or not."""

from __future__ import annotations

import zlib

import numpy as np

from crossrep.store import ActivationStore, ShardKey, chunk_rows
from crossrep import languages as langs

RANK = 4
NOISE_RANK = 6  # activations have few strong directions; full-rank noise would fill every kept direction


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, key)).encode()))


def representation(ids, lang, modality, point, width, a, b, seed=0) -> np.ndarray:
    z = np.stack([_rng(seed, "z", i).standard_normal(RANK) for i in ids])
    u = np.stack([_rng(seed, "u", lang, i).standard_normal(RANK) for i in ids])
    g = _rng(seed, "proj", lang, modality, point.name)
    w, v = g.standard_normal((RANK, width)), g.standard_normal((RANK, width))
    noise = g.standard_normal((NOISE_RANK, width)) / np.sqrt(NOISE_RANK)
    e = np.stack([_rng(seed, "e", lang, modality, point.name, i).standard_normal(NOISE_RANK) for i in ids])
    x = np.sqrt(a) * z @ w / np.sqrt(RANK) + np.sqrt(b) * u @ v / np.sqrt(RANK) + np.sqrt(1 - a - b) * e @ noise
    return x.astype(np.float32)


def plant(out, scenario, seed=0) -> None:
    """Fill every shard of the store at `out` from `scenario` and mark it complete."""
    store = ActivationStore(out, mode="r+")
    for m in store.plan.models:
        for modality, points in m.points.items():
            for lang in m.languages:
                key = ShardKey(m.name, modality, lang)
                ids = list(m.shard_ids[lang])
                level = langs.get(lang).level
                full = {p.name: representation(ids, lang, modality, p, p.width,
                                               *scenario(lang, level, modality, p), seed=seed) for p in points}
                for c in range(-(-len(ids) // store.plan.chunk_size)):
                    rows = chunk_rows(len(ids), store.plan.chunk_size, c)
                    store.write_chunk(key, c, {name: x[rows] for name, x in full.items()})
                store.mark(key, complete=True)


def planted(lang, level, modality, point):
    """Every finding of the study: token sharing goes with text similarity at the input embeddings; speech
    aligns more with depth, less for low-resource languages, gains at the length adaptor for high-resource ones
    only; text is more aligned than speech throughout."""
    if modality == "text":  # at the input embeddings, scripts that share tokens (Latin) share the meaning more
        if point.kind == "input":
            return (0.7 if langs.get(lang).script == "Latn" else 0.1), 0.0
        return 0.7, 0.0
    base = 0.3 if level in ("high", "medium") else 0.0
    depth = min(point.depth, 4.0)
    a = base + 0.1 * max(depth, 0.0)
    if point.kind == "adaptor" and level in ("high", "medium"):
        a += 0.2
    return min(a, 0.9), 0.0


def absent(lang, level, modality, point):
    """No finding: the same alignment everywhere, and a language latent shared by the two modalities of a
    language, so that cross-modal similarity exceeds cross-lingual similarity (finding 6 reversed)."""
    return 0.35, 0.35
