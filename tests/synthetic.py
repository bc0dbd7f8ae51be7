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
    aligns more with depth, less for low-resource languages, gains at the length adaptor for high- and
    medium-resource ones only; text is more aligned than speech throughout, and across languages more than
    across modalities at the last layer for every language."""
    if modality == "text":  # at the input embeddings, scripts that share tokens (Latin) share the meaning more
        if point.kind == "input":
            return (0.75 if langs.get(lang).script == "Latn" else 0.1), 0.0
        return 0.75, 0.0
    base = 0.3 if level in ("high", "medium") else 0.0
    depth = min(point.depth, 4.0)
    a = base + 0.08 * max(depth, 0.0)
    if point.kind == "adaptor" and level in ("high", "medium"):
        a += 0.25
    return min(a, 0.9), 0.0


def absent(lang, level, modality, point):
    """No finding: the same alignment everywhere, and a language latent shared by the two modalities of a
    language, so that cross-modal similarity exceeds cross-lingual similarity (finding 6 reversed)."""
    return 0.35, 0.35


# ---------------------------------------------------------------- calibration: simulated activations in memory
#
# A representation (language l, modality m, point p) of sentence s is
#     sqrt(w_z) z_s A + sqrt(w_m) c_{m,s} B + sqrt(w_l) u_{l,s} C + sqrt(1 - w_z - w_m - w_l) e D
# z_s: the sentence's meaning, shared by every language and both modalities; c_{m,s}: a component shared by every
# language of modality m on the same sentence (what makes all text-minus-speech differences of a sample move
# together); u_{l,s}: shared by the two modalities of language l; e: the array's own noise. A, B, C, D are random
# per array. A scenario gives the weights; with `corresponding=False` every latent is drawn anew for every
# array (no sentence correspondence at all: every score is at chance).

CAL_LANGS = {"high": ("eng", "deu", "fra", "cmn", "arb"), "medium": ("tur", "ell", "hin", "rus", "tha"),
             "low": ("swh", "amh", "bul", "khm", "kat")}
CAL_TEXT = (("in", "input", 0.0), ("1", "layer", 1.0), ("2", "layer", 2.0), ("3", "layer", 3.0), ("4", "layer", 4.0))
CAL_SPEECH = (("1", "layer", 1.0), ("2", "layer", 2.0), ("3", "layer", 3.0), ("4", "layer", 4.0),
              ("len", "adaptor", 5.0))
CAL_PAIRS = (("1", "1", "1"), ("2", "2", "2"), ("3", "3", "3"), ("4", "4", "4"), ("len", "4", "len"))


def cal_plan(n: int = 36, width: int = 16, languages=None, text=CAL_TEXT, speech=CAL_SPEECH, pairs=CAL_PAIRS):
    """A one-model plan shaped like tiny SeamlessM4T's: text in, 1..4; speech 1..4 and a length adaptor."""
    from crossrep.point import Point
    from crossrep.store import ModelPlan

    langs_ = tuple(languages or [c for level in CAL_LANGS.values() for c in level])
    ids = tuple(range(n))
    return ModelPlan("sim", "seamless_m4t_v2", "simulated", {}, langs_,
                     {"text": tuple(Point(a, width, d, k) for a, k, d in text),
                      "speech": tuple(Point(a, width, d, k) for a, k, d in speech)},
                     pairs, {lang: ids for lang in langs_}, ids, {lang: ids for lang in langs_})


def null_weights(lang, level, modality, point, strength=0.0):
    """Every finding absent, with structure: the same weights at every point, level and modality; text and speech
    equally aligned across languages (w_m equal) and across modalities as across languages (w_l = w_m), so
    cross-modal equals cross-lingual similarity; shared sentence components in both modalities."""
    return {"z": 0.3, "m": 0.15, "l": 0.15}


def shared_sentences(lang, level, modality, point, strength=0.0):
    """Finding 4's null with a strong component shared by every language of a modality on each sentence: text and
    speech equally aligned across languages, and all text-minus-speech differences of a sample moving together."""
    return {"z": 0.1, "m": 0.6, "l": 0.1}


def finding4_plan():
    """A small plan for finding 4's calibration: 8 languages, 24 sentences, two layers in each modality."""
    layers = (("1", "layer", 1.0), ("2", "layer", 2.0))
    return cal_plan(n=24, width=12, languages=["eng", "deu", "fra", "cmn", "hin", "rus", "amh", "bul"],
                    text=layers, speech=layers, pairs=(("1", "1", "1"), ("2", "2", "2")))


def planted_weights(lang, level, modality, point, strength=1.0):
    """Every finding planted, scaled by `strength`: the weights move from `null_weights` (0) to those of
    `planted` (1, the suite's planted run: meaning weight a, language weight b, no modality-shared component)."""
    a, b = planted(lang, level, modality, point)
    null = null_weights(lang, level, modality, point)
    return {k: (1 - strength) * null[k] + strength * v for k, v in (("z", a), ("m", 0.0), ("l", b))}


def cal_sharing(plan, seed: int):
    """A token-sharing matrix like a tokenizer's: Latin-script pairs share more tokens, plus pair noise."""
    import xarray as xr

    g = _rng(seed, "sharing")
    latn = np.array([langs.get(c).script == "Latn" for c in plan.languages])
    s = 0.1 + 0.3 * (latn[:, None] & latn[None, :]) + g.normal(0, 0.03, (len(latn), len(latn)))
    s = (s + s.T) / 2
    np.fill_diagonal(s, 1.0)
    return xr.DataArray(s, dims=("lang_a", "lang_b"), coords={"lang_a": list(plan.languages),
                                                              "lang_b": list(plan.languages)})


class MemoryStore:
    """Simulated activations with the store's `model`, `ids` and `read`, for `results.model_dataset`."""

    def __init__(self, plan, scenario, seed: int, strength: float = 1.0, corresponding: bool = True):
        self.plan, self.token = plan, (seed, scenario.__name__, strength, corresponding)
        n = len(plan.crosslingual_ids)
        g = _rng(seed, "latents")
        z = g.standard_normal((n, RANK))
        shared_m = {m: g.standard_normal((n, RANK)) for m in ("text", "speech")}
        shared_l = {lang: g.standard_normal((n, RANK)) for lang in plan.languages}
        self.arrays = {}
        for modality, points in plan.points.items():
            for lang in plan.languages:
                level = langs.get(lang).level
                for p in points:
                    w = scenario(lang, level, modality, p, strength)
                    a = _rng(seed, "array", lang, modality, p.name)
                    parts = (z, shared_m[modality], shared_l[lang]) if corresponding else \
                        tuple(a.standard_normal((n, RANK)) for _ in range(3))
                    x = sum(np.sqrt(wt) * lat @ a.standard_normal((RANK, p.width)) / np.sqrt(RANK)
                            for wt, lat in zip((w["z"], w["m"], w["l"]), parts))
                    rest = 1.0 - w["z"] - w["m"] - w["l"]
                    x = x + np.sqrt(rest) * a.standard_normal((n, NOISE_RANK)) @ \
                        a.standard_normal((NOISE_RANK, p.width)) / np.sqrt(NOISE_RANK)
                    self.arrays[modality, lang, p.name] = x.astype(np.float32)

    def __dask_tokenize__(self):
        return self.token

    def model(self, name):
        return self.plan

    def ids(self, key):
        return np.asarray(self.plan.shard_ids[key.lang], dtype=np.int64)

    def read(self, key, point):
        return self.arrays[key.modality, key.lang, point]


def cal_job(measures=("svcca",), permutations: int = 4, jackknife: int = 10, seed: int = 0, speakers: int = 0):
    """The job keys `results.model_dataset` reads, for one simulated model, on one thread."""
    from types import SimpleNamespace

    from crossrep.config import MeasureSpec, ProbesConfig, RetrievalConfig, SimilarityConfig

    sim = SimilarityConfig(measures=tuple(MeasureSpec(m) for m in measures), knn=5, variance=0.9, variance_mode="singular", epsilon=1e-10,
                           baseline_repeats=1, seed=seed, backend="numpy", scheduler="threads", workers=1,
                           families=("crossmodal", "text", "speech"), permutations=permutations,
                           bootstrap=0, jackknife=jackknife, speakers=speakers)
    return SimpleNamespace(similarity=sim, analysis=SimpleNamespace(language_bootstrap=200, seed=seed),
                           data=SimpleNamespace(levels={}, utterances="all" if speakers else "one"),
                           models=[SimpleNamespace(name="sim")], out=None,
                           retrieval=RetrievalConfig(scorings=(), k=4, center=False, bootstrap=0),  # findings only
                           probes=ProbesConfig(enabled=False, folds=5, permutations=2, bootstrap=0, c=1.0))


def simulate(scenario, seed: int, strength: float = 1.0, corresponding: bool = True, measures=("svcca",),
             permutations: int = 4, jackknife: int = 10, plan=None):
    """One simulated model's similarity Dataset through the real reduction graph, and its token sharing."""
    from crossrep import results

    plan = plan or cal_plan()
    store = MemoryStore(plan, scenario, seed, strength, corresponding)
    ds = results.model_dataset(cal_job(measures, permutations, jackknife, seed), store, "sim")
    return ds, cal_sharing(plan, seed)


class SpeakerStore(MemoryStore):
    """MemoryStore whose speech shards hold every recording: each language has two readers, every key is read by
    one of them and every other key by both; a recording is its key's speech row plus its reader's voice (a
    latent of the reader, the same for all the reader's recordings, weight `voice`) plus its own noise. The kept
    recording (the first row of a key) is a random reader, as planning draws it. Text gets the same structure
    from two styles, one per key at random, so that both modalities stay alike (finding 4's null)."""

    def __init__(self, plan, scenario, seed: int, voice: float = 0.5, **kw):
        super().__init__(plan, scenario, seed, **kw)
        self.token = self.token + ("speakers", voice)
        n = len(plan.crosslingual_ids)
        self.rows = {}
        for lang in plan.languages:
            g = _rng(seed, "readers", lang)
            first = g.integers(0, 2, n)  # who reads each key (and is kept where both read it)
            readers = [[int(first[k])] + ([1 - int(first[k])] if k % 2 == 0 else []) for k in range(n)]
            self.rows[lang] = (np.repeat(np.arange(n), [len(r) for r in readers]),
                               np.concatenate([np.array(r) for r in readers]))
            style = g.integers(0, 2, n)
            for modality, points in plan.points.items():
                keys, who = self.rows[lang] if modality == "speech" else (np.arange(n), style)
                for p in points:
                    x = self.arrays[modality, lang, p.name].astype(np.float64)
                    a = _rng(seed, "voice", lang, modality, p.name)
                    voices = a.standard_normal((2, RANK)) @ a.standard_normal((RANK, p.width)) / np.sqrt(RANK)
                    own = a.standard_normal((len(keys), p.width)) * 0.1
                    self.arrays[modality, lang, p.name] = (x[keys] + np.sqrt(voice) * voices[who]
                                                           + own).astype(np.float32)

    def ids(self, key):
        if key.modality == "speech":
            return self.rows[key.lang][0].astype(np.int64)
        return super().ids(key)
