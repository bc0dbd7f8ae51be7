"""Readouts of the stored pooled activations beside the similarity measures: top-1 retrieval per point
(crossrep.retrieve) and linear probes per point (crossrep.probes), one Dask task per point (or cross-modal pair)
and direction, run on the job's scheduler like the reduction. This module only computes: the numbers come back
as `Table`s, which crossrep.results names and stores in similarity.zarr.

Retrieval directions (M: the shared ids, N: each language's first N ids):
- `retrieval_crossmodal`: speech of a language retrieving its own transcripts, N sentences (pair, lang);
- `retrieval_text`, `retrieval_speech`: lang_a retrieving its translations in lang_b, M sentences, every ordered
  pair (point, lang_a, lang_b; diagonal NaN);
- `retrieval_speech_text`: speech of lang_a retrieving the text of lang_b, M sentences (pair, lang_a, lang_b;
  diagonal NaN).
Retrieval compares in one space: a cross-modal pair whose two points differ in width is NaN (encoder models'
middle layers; their shared output is comparable). Chance is 1/(number of candidates). The sentence bootstrap
resamples each cell's queries (the candidates stay), with one resample per replicate for every cell.

Probes (on the M shared ids): `probe_language_text` and `probe_language_speech` (language identity per point of
one modality), `probe_language_pooled` (both modalities' rows of a cross-modal pair), `probe_modality` (text vs
speech, pooled over languages; NaN where the pair's widths differ).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import probes, retrieve, stats
from .config import Job
from .errors import StoreError
from .families import pair_coords, point_coords
from .reduce import array_backend, compute, one_thread, shard_point
from .store import ActivationStore, ModelPlan, id_rows


@dataclass(frozen=True)
class Table:
    """One readout variable: `score` (*lead, *dims) with lead ("scoring",) for retrieval and () for probes;
    `boot` (*lead, B, *dims) or None; `chance` and `p` (*lead, *dims) or None."""

    name: str
    dims: tuple[str, ...]
    coords: dict
    language_dims: tuple[str, ...]
    score: np.ndarray
    chance: np.ndarray
    boot: np.ndarray | None
    p: np.ndarray | None
    description: str
    lead: tuple[str, ...] = field(default=())


def _rep(stored, ids: tuple, where: str, center: bool | None):
    """A stored point's rows of `ids`: retrieval-prepared (unit rows) when `center` is given, else as stored."""
    stored_ids, data = stored
    x = data[id_rows(stored_ids, np.array(ids), where)]
    if not np.isfinite(x).all():
        raise StoreError(f"{where}: activations contain NaN or infinity")
    return x if center is None else retrieve.prepare(x, center)


def retrieval_task(cfg: dict, src: list, tgt: list, ids: list, where: tuple, within: bool, same: bool) -> tuple:
    """One Dask task: the top-1 accuracy of src[i] retrieving tgt[j] (`within`: only i == j; else every i != j),
    per scoring, and its sentence-bootstrap replicates: ((S, L) or (S, L, L), (S, B, ...)). `where`: the src and
    tgt lists' names for errors; `same`: src and tgt are one list (one score matrix per unordered pair gives both
    directions)."""
    scorings, k, center, count, seed = cfg["scorings"], cfg["k"], cfg["center"], cfg["bootstrap"], cfg["seed"]
    xp = array_backend(cfg["backend"])
    n_lang = len(src)
    with one_thread():
        a = [xp.asarray(_rep(s, i, w, center)) for s, i, w in zip(src, ids, where[0])]
        b = a if same else [xp.asarray(_rep(t, i, w, center)) for t, i, w in zip(tgt, ids, where[1])]
        shape = (len(scorings),) + ((n_lang,) if within else (n_lang, n_lang))
        acc, boot = np.full(shape, np.nan), np.full(shape[:1] + (count,) + shape[1:], np.nan)
        draws = {}  # sentence count -> the bootstrap resamples, (B, n)
        cells = [(i, i) for i in range(n_lang)] if within else (
            [(i, j) for i in range(n_lang) for j in range(i + 1, n_lang)] if same
            else [(i, j) for i in range(n_lang) for j in range(n_lang) if i != j])
        for i, j in cells:
            if a[i].shape[1] != b[j].shape[1]:
                continue  # no shared space
            n = a[i].shape[0]
            found = retrieve.retrieved(a[i], b[j], tuple(scorings), k)
            if n not in draws:
                draws[n] = np.array([stats.resample(seed, n, r) for r in range(count)], dtype=np.intp).reshape(
                    count, n)
            for s, name in enumerate(scorings):
                forward, backward = found[name]
                for cell, best in (((i,) if within else (i, j), forward),) + ((((j, i), backward),) if same else ()):
                    hits = best == np.arange(n)
                    acc[(s,) + cell] = hits.mean()
                    boot[(s, slice(None)) + cell] = hits[draws[n]].mean(axis=1)
    return acc, boot


def probe_task(cfg: dict, reps: list, labels: list, groups: list, name: str) -> tuple:
    """One Dask task: a probe over the rows of `reps` (stored points and their ids) with their labels and
    sentence-id groups: (accuracy, chance, p, boot); NaN when the rows' widths differ."""
    with one_thread():
        xs = [_rep(stored, ids, where, None) for stored, ids, where in reps]
        if len({x.shape[1] for x in xs}) > 1:
            return np.nan, np.nan, np.nan, np.full(cfg["bootstrap"], np.nan)
        try:
            got = probes.probe(np.concatenate(xs), np.concatenate(labels), np.concatenate(groups), cfg["folds"],
                               cfg["permutations"], cfg["bootstrap"], cfg["c"], cfg["seed"], name)
        except ValueError as exc:
            raise StoreError(f"probe {name}: {exc}") from None
    return got.accuracy, got.chance, got.p, got.boot


def model_tables(job: Job, store, model: str) -> list[Table]:
    """One model's retrieval and probe tables (none when the job turns both off)."""
    plan: ModelPlan = store.model(model)
    source = str(job.out) if isinstance(store, ActivationStore) else store
    dsk: dict = {}

    def stored(modality, lang, point):
        key = ("stored", model, modality, lang, point)
        dsk.setdefault(key, (shard_point, source, model, modality, lang, point))
        return key

    keys, builders = {}, []
    if job.retrieval.scorings:
        cfg = {**vars(job.retrieval), "scorings": list(job.retrieval.scorings), "seed": job.similarity.seed,
               "backend": job.similarity.backend}
        for spec in _retrieval_specs(plan):
            keys[spec["name"]] = []
            for label, sp, tp in spec["points"]:
                key = ("retrieval", model, spec["name"], label)
                ids = [spec["ids"](lang) for lang in plan.languages]
                dsk[key] = (retrieval_task, cfg,
                            [stored(spec["src"], lang, sp) for lang in plan.languages],
                            [stored(spec["tgt"], lang, tp) for lang in plan.languages], ids,
                            ([f"{model}/{spec['src']}/{lang} point {sp}" for lang in plan.languages],
                             [f"{model}/{spec['tgt']}/{lang} point {tp}" for lang in plan.languages]),
                            spec["within"], spec["src"] == spec["tgt"])
                keys[spec["name"]].append(key)
            builders.append(spec)
    if job.probes.enabled:
        cfg = {**vars(job.probes), "seed": job.similarity.seed}
        ids = plan.crosslingual_ids
        for spec in _probe_specs(plan):
            keys[spec["name"]] = []
            for label, parts in spec["points"]:
                reps, labels, groups = [], [], []
                for modality, point in parts:
                    for li, lang in enumerate(plan.languages):
                        reps.append((stored(modality, lang, point), ids, f"{model}/{modality}/{lang} point {point}"))
                        labels.append(np.full(len(ids), li if spec["label"] == "language"
                                              else int(modality == "speech")))
                        groups.append(np.array(ids))
                key = ("probe", model, spec["name"], label)
                dsk[key] = (probe_task, cfg, reps, labels, groups, f"{model}/{spec['name']}/{label}")
                keys[spec["name"]].append(key)
            builders.append(spec)
    if not builders:
        return []
    results = compute(dsk, keys, job, f"retrieval and probes {model}")
    return [_table(spec, results[spec["name"]], plan, job) for spec in builders]


def _point_dims(plan, modality: str) -> dict:
    return point_coords(plan, modality, f"{modality}_point")


def _retrieval_specs(plan) -> list[dict]:
    pairs = [(label, s, t) for label, t, s in plan.pairs]
    langs = {"lang": list(plan.languages)}
    pair_langs = {"lang_a": list(plan.languages), "lang_b": list(plan.languages)}
    cross = {"ids": lambda lang: plan.crossmodal_ids[lang]}
    shared = {"ids": lambda lang: plan.crosslingual_ids}
    specs = [dict(name="retrieval_crossmodal", src="speech", tgt="text", within=True, points=pairs,
                  dims=("pair", "lang"), coords={**pair_coords(plan), **langs}, language_dims=("lang",),
                  description="speech of lang retrieving its own transcripts among its first N sentence ids", **cross)]
    for modality in ("text", "speech"):
        specs.append(dict(name=f"retrieval_{modality}", src=modality, tgt=modality, within=False,
                          points=[(p.name, p.name, p.name) for p in plan.points[modality]],
                          dims=(f"{modality}_point", "lang_a", "lang_b"),
                          coords={**_point_dims(plan, modality), **pair_langs}, language_dims=("lang_a", "lang_b"),
                          description=f"{modality} of lang_a retrieving its translation's {modality} in lang_b "
                                      f"among the M shared ids (diagonal NaN)", **shared))
    specs.append(dict(name="retrieval_speech_text", src="speech", tgt="text", within=False, points=pairs,
                      dims=("pair", "lang_a", "lang_b"), coords={**pair_coords(plan), **pair_langs},
                      language_dims=("lang_a", "lang_b"),
                      description="speech of lang_a retrieving the text of lang_b among the M shared ids "
                                  "(diagonal NaN)", **shared))
    for spec in specs:
        spec["kind"] = "retrieval"
        spec["candidates"] = len(spec["ids"](plan.languages[0]))
    return specs


def _probe_specs(plan) -> list[dict]:
    pairs = [(label, [("text", t), ("speech", s)]) for label, t, s in plan.pairs]
    specs = [dict(name=f"probe_language_{m}", label="language", dims=(f"{m}_point",),
                  coords=_point_dims(plan, m), points=[(p.name, [(m, p.name)]) for p in plan.points[m]],
                  description=f"language identity from {m} (M shared ids per language)")
             for m in ("text", "speech")]
    specs.append(dict(name="probe_language_pooled", label="language", dims=("pair",), coords=pair_coords(plan),
                      points=pairs, description="language identity from text and speech rows together"))
    specs.append(dict(name="probe_modality", label="modality", dims=("pair",), coords=pair_coords(plan),
                      points=pairs, description="text vs speech, pooled over languages"))
    for spec in specs:
        spec["kind"] = "probe"
    return specs


def _table(spec: dict, results: list, plan, job: Job) -> Table:
    if spec["kind"] == "retrieval":
        acc = np.stack([r[0] for r in results], axis=1)  # (S, points, ...)
        boot = np.stack([r[1] for r in results], axis=2) if job.retrieval.bootstrap else None  # (S, B, points, ...)
        chance = np.where(np.isfinite(acc), 1.0 / spec["candidates"], np.nan)
        return Table(spec["name"], spec["dims"], spec["coords"], spec["language_dims"], acc, chance, boot, None,
                     spec["description"], lead=("scoring",))
    acc, chance, p = (np.array([r[i] for r in results], dtype=np.float64) for i in range(3))
    boot = np.stack([r[3] for r in results], axis=0).T if job.probes.bootstrap else None  # (B, points)
    return Table(spec["name"], spec["dims"], spec["coords"], (), acc, chance, boot, p, spec["description"])
