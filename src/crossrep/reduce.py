"""The reduction stage: SVCCA for every language pair and point, in parallel with Dask, into similarity.zarr.

Families, per model and point: `text` and `speech` (cross-lingual, every pair of languages, on the first M
shared sentence ids), `text_speech` (text of one language against speech of every language, diagonal included,
on the same M ids) and `crossmodal` (text against speech of one language on its first N ids). Each family has
a random-vector baseline of the same sizes. Results go to `<out>/similarity.zarr` (one xarray Dataset per model
group) and `<out>/similarity.csv`, `<out>/baseline.csv`.
"""

from __future__ import annotations

import functools
import shutil
import zlib
from pathlib import Path

import dask
import numpy as np
import xarray as xr
import zarr
from threadpoolctl import threadpool_limits

from . import languages as langs
from .config import Job
from .errors import StoreError
from .plan import shards as all_shards
from .store import ActivationStore, ShardKey
from . import measures

FILENAME = "similarity.zarr"
FAMILIES = ("text", "speech", "text_speech", "crossmodal")


def check_complete(job: Job, store: ActivationStore) -> None:
    """Refuse to reduce an incomplete store, naming every shard that is not complete."""
    table = all_shards(job)
    bad = [(i, st) for i, st in enumerate(store.state(s) for s in table) if st.status != "complete"]
    if bad:
        listed = ", ".join(f"{i}:{st.key} ({st.status})" for i, st in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise StoreError(f"{store.path}: {len(bad)} shards are not complete: {listed}{more}; "
                         f"run `crossrep status` and `crossrep extract` (or `resume`) first")


def array_backend(name: str):
    """numpy or cupy for `similarity.backend` (auto: cupy when it imports and sees a GPU)."""
    if name == "numpy":
        return np
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except Exception as exc:  # no cupy, no driver, no device
        if name == "cupy":
            raise StoreError(f"similarity.backend is cupy but CuPy cannot use a GPU here: {exc}") from None
    return np


def prepared(out: str, model: str, sim: dict, measure: str, modality: str, lang: str, point: str,
             ids: list[int]):
    """One Dask task: a representation read lazily from the store and prepared for a measure (for SVCCA its
    reduced basis), once for every pair it is in. BLAS runs one thread per task: Dask's workers are the
    parallelism, and the small matrix products of the reduction run faster unthreaded."""
    with threadpool_limits(limits=1):
        xp = array_backend(sim["backend"])
        x = xp.asarray(_open(out).read(ShardKey(model, modality, lang), point, ids))
        return measures.prepare(measure, x, sim)


@functools.lru_cache(maxsize=4)
def _open(out: str) -> ActivationStore:
    """The store, opened (and its plan parsed) once per worker process rather than once per task."""
    return ActivationStore(Path(out))


def scores(measure: str, reps_a: list, reps_b: list | None, pairs: list[tuple[int, int]]) -> np.ndarray:
    """One Dask task: a measure for a chunk of pairs (NaN elsewhere)."""
    with threadpool_limits(limits=1):
        return measures.pair_matrix(measure, reps_a, reps_b, pairs)


def assemble(parts: list[np.ndarray], symmetric: bool, diagonal: bool) -> np.ndarray:
    """The family's matrix (or, for cross-modal, its diagonal) from the chunks' results."""
    out = np.fmax.reduce(np.stack(parts), axis=0)
    if symmetric:
        upper = np.triu_indices(out.shape[0], 1)
        out[upper[1], upper[0]] = out[upper]
    return np.diag(out).copy() if diagonal else out


def baseline(sim: dict, measure: str, key: str, n: int, width_a: int, width_b: int) -> np.ndarray:
    seed = zlib.crc32(f"{sim['seed']}/{key}".encode())
    with threadpool_limits(limits=1):
        return measures.random_baseline(measure, n, width_a, width_b, sim["baseline_repeats"], seed, sim)


PAIRS_PER_TASK = 128  # a family's pairs are split into tasks of this size, for load balance


def model_dataset(job: Job, store: ActivationStore, model: str) -> xr.Dataset:
    """One model's similarity families for every measure of the job, computed as a Dask graph, as a Dataset."""
    _open.cache_clear()  # a store opened by an earlier reduction in this process may have been remade since
    plan = store.model(model)
    sim = vars(job.similarity)
    out = str(job.out)
    languages = list(plan.languages)
    cl_ids, cm_ids = list(plan.crosslingual_ids), {k: list(v) for k, v in plan.crossmodal_ids.items()}
    tp = [vars(p) for p in plan.points["text"]]
    sp = [vars(p) for p in plan.points["speech"]]
    width = {("text", p["name"]): p["width"] for p in tp} | {("speech", p["name"]): p["width"] for p in sp}
    pairs = [list(p) for p in plan.pairs]
    m, n = len(cl_ids), len(next(iter(cm_ids.values())))
    d = dask.delayed(pure=True)
    cache: dict = {}
    count = len(languages)
    upper = [(i, j) for i in range(count) for j in range(i + 1, count)]
    full = [(i, j) for i in range(count) for j in range(count)]
    diag = [(i, i) for i in range(count)]
    shared, own = (lambda lang: cl_ids), (lambda lang: cm_ids[lang])

    def reps(measure, modality, point, ids_of):
        keys = [(measure, modality, lang, point, tuple(ids_of(lang))) for lang in languages]
        for key in keys:
            if key not in cache:
                cache[key] = d(prepared)(out, model, sim, *key[:4], list(key[4]))
        return [cache[key] for key in keys]

    def family(measure, a, b, pairs_of, symmetric=False, diagonal=False):
        parts = [d(scores)(measure, a, b, pairs_of[c:c + PAIRS_PER_TASK])
                 for c in range(0, len(pairs_of), PAIRS_PER_TASK)]
        return d(assemble)(parts, symmetric, diagonal)

    def tasks_for(me):
        return {
            "text": [family(me, reps(me, "text", p["name"], shared), None, upper, symmetric=True) for p in tp],
            "speech": [family(me, reps(me, "speech", p["name"], shared), None, upper, symmetric=True) for p in sp],
            "text_speech": [family(me, reps(me, "text", t, shared), reps(me, "speech", s, shared), full)
                            for _, t, s in pairs],
            "crossmodal": [family(me, reps(me, "text", t, own), reps(me, "speech", s, own), diag, diagonal=True)
                           for _, t, s in pairs],
            "baseline_text": [d(baseline)(sim, me, f"{model}/text/{p['name']}", m, p["width"], p["width"])
                              for p in tp],
            "baseline_speech": [d(baseline)(sim, me, f"{model}/speech/{p['name']}", m, p["width"], p["width"])
                                for p in sp],
            "baseline_text_speech": [d(baseline)(sim, me, f"{model}/text_speech/{lbl}", m, width["text", t],
                                                 width["speech", s]) for lbl, t, s in pairs],
            "baseline_crossmodal": [d(baseline)(sim, me, f"{model}/crossmodal/{lbl}", n, width["text", t],
                                                width["speech", s]) for lbl, t, s in pairs],
        }

    names = job.similarity.measures
    results = compute({me: tasks_for(me) for me in names}, job)
    shapes = {"text": (len(tp), count, count), "speech": (len(sp), count, count),
              "text_speech": (len(pairs), count, count), "crossmodal": (len(pairs), count),
              "baseline_text": (len(tp), -1), "baseline_speech": (len(sp), -1),
              "baseline_text_speech": (len(pairs), -1), "baseline_crossmodal": (len(pairs), -1)}
    stack = {k: np.stack([np.asarray(results[me][k]).reshape(shape) for me in names]) for k, shape in shapes.items()}
    lang_info = [langs.get(code) for code in languages]
    ds = xr.Dataset(
        {
            "text": (("measure", "text_point", "lang_a", "lang_b"), stack["text"]),
            "speech": (("measure", "speech_point", "lang_a", "lang_b"), stack["speech"]),
            "text_speech": (("measure", "pair", "lang_a", "lang_b"), stack["text_speech"]),
            "crossmodal": (("measure", "pair", "lang"), stack["crossmodal"]),
            "baseline_text": (("measure", "text_point", "repeat"), stack["baseline_text"]),
            "baseline_speech": (("measure", "speech_point", "repeat"), stack["baseline_speech"]),
            "baseline_text_speech": (("measure", "pair", "repeat"), stack["baseline_text_speech"]),
            "baseline_crossmodal": (("measure", "pair", "repeat"), stack["baseline_crossmodal"]),
        },
        coords={
            "measure": _str(names),
            "lang": _str(languages), "lang_a": _str(languages), "lang_b": _str(languages),
            "level": ("lang", _str([x.level for x in lang_info])),
            "family": ("lang", _str([x.family for x in lang_info])),
            "text_point": _str([p["name"] for p in tp]), "text_depth": ("text_point", [p["depth"] for p in tp]),
            "speech_point": _str([p["name"] for p in sp]),
            "speech_depth": ("speech_point", [p["depth"] for p in sp]),
            "pair": _str([lbl for lbl, _, _ in pairs]),
            "pair_text_point": ("pair", _str([t for _, t, _ in pairs])),
            "pair_speech_point": ("pair", _str([s for _, _, s in pairs])),
            "pair_depth": ("pair", [next(p["depth"] for p in sp if p["name"] == s) for _, _, s in pairs]),
            "repeat": np.arange(job.similarity.baseline_repeats),
        },
        attrs={
            "model": model, "adapter": plan.adapter, "checkpoint": plan.checkpoint,
            "options": plan.options,
            "variance": job.similarity.variance, "variance_mode": job.similarity.variance_mode,
            "epsilon": job.similarity.epsilon, "knn": job.similarity.knn,
            "crosslingual_sentences": m, "crossmodal_sentences": n,
            "description": "text/speech: cross-lingual similarity (lang_a vs lang_b, same modality, diagonal NaN); "
                           "text_speech: text of lang_a vs speech of lang_b; crossmodal: text vs speech of one "
                           "language; baseline_*: the measure on random normal arrays of the same sizes",
        },
    )
    return ds


def compute(tasks, job: Job):
    """Run a Dask graph on the scheduler the job names, with a progress display."""
    from .scheduler import scheduler

    with scheduler(job) as run:
        return run(tasks)


def _str(values) -> np.ndarray:
    """Strings as Zarr v3's variable-length UTF-8 (fixed-width numpy strings have no v3 specification)."""
    return np.array(list(values), dtype=object)


def run(job: Job) -> Path:
    """Reduce a complete activation store into `<out>/similarity.zarr` and the CSV tables, after checking that
    the job describes the store and that every chunk verifies."""
    from .plan import open_checked

    store = open_checked(job)
    check_complete(job, store)
    damaged = store.verify()
    if damaged:
        ActivationStore(job.out, mode="r+").forget(damaged)
        listed = "\n  ".join(str(d) for d in damaged[:20])
        more = f"\n  ... and {len(damaged) - 20} more" if len(damaged) > 20 else ""
        raise StoreError(f"{store.path}: {len(damaged)} damaged chunks, now marked for recomputation:\n  {listed}"
                         f"{more}\nrun `crossrep run` (or `resume`) with the same job to recompute exactly those")
    datasets = {m.name: model_dataset(job, store, m.name) for m in job.models}
    target = job.out / FILENAME
    tmp = job.out / (FILENAME + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    for name, ds in datasets.items():
        ds.to_zarr(tmp, group=name, mode="w", zarr_format=3, consolidated=False)
    settings = zarr.open_group(str(tmp), mode="r+", zarr_format=3)
    settings.attrs["crossrep"] = {"similarity": similarity_settings(job), "models": [m.name for m in job.models]}
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    write_tables(datasets, job.out)
    return target


def write_tables(datasets: dict[str, xr.Dataset], out: Path) -> None:
    """similarity.csv (one row per score) and baseline.csv (mean and std of the random baselines)."""
    rows, base = [], []
    for model, full in datasets.items():
        for measure in full.measure.values:
            ds = full.sel(measure=measure)
            for family, dim in (("text", "text_point"), ("speech", "speech_point"), ("text_speech", "pair"),
                                ("crossmodal", "pair")):
                for point in ds[dim].values:
                    values = ds[family].sel({dim: point}).values
                    if family == "crossmodal":
                        rows += [(model, measure, family, point, a, a, v) for a, v in zip(ds.lang.values, values)]
                    else:
                        rows += [(model, measure, family, point, a, b, values[i, j])
                                 for i, a in enumerate(ds.lang_a.values) for j, b in enumerate(ds.lang_b.values)
                                 if family == "text_speech" or j > i]
                    v = ds[f"baseline_{family}"].sel({dim: point}).values
                    base.append((model, measure, family, point, v.mean(), v.std(ddof=1) if v.size > 1 else 0.0))
    with open(out / "similarity.csv", "w", encoding="utf-8") as f:
        f.write("model,measure,family,point,lang_a,lang_b,score\n")
        f.writelines(f"{m},{me},{fam},{p},{a},{b},{v:.8f}\n" for m, me, fam, p, a, b, v in rows)
    with open(out / "baseline.csv", "w", encoding="utf-8") as f:
        f.write("model,measure,family,point,mean,std\n")
        f.writelines(f"{m},{me},{fam},{p},{mu:.8f},{sd:.8f}\n" for m, me, fam, p, mu, sd in base)


def similarity_settings(job: Job) -> dict:
    """What similarity.zarr was computed with: the job's similarity keys that change its numbers."""
    keep = ("measures", "knn", "variance", "variance_mode", "epsilon", "baseline_repeats", "seed")
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(job.similarity).items() if k in keep}


def check_similarity(job: Job) -> None:
    """Refuse a job whose similarity settings or models differ from those similarity.zarr was computed with."""
    path = job.out / FILENAME
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path}: no similarity store (run the reduce stage first)")
    info = zarr.open_group(str(path), mode="r", zarr_format=3).attrs.get("crossrep", {})
    stored = {"similarity": info.get("similarity"), "models": info.get("models")}
    wanted = {"similarity": similarity_settings(job), "models": [m.name for m in job.models]}
    diff = []
    for part in ("similarity", "models"):
        if part == "models" and stored[part] != wanted[part]:
            diff.append(f"models: stored {stored[part]!r}, requested {wanted[part]!r}")
        elif part == "similarity":
            old = stored[part] or {}
            diff += [f"similarity.{k}: stored {old.get(k, '(absent)')!r}, requested {v!r}"
                     for k, v in wanted[part].items() if old.get(k, ...) != v]
    if diff:
        raise StoreError(f"{path}: computed with other settings; it differs in:\n  " + "\n  ".join(diff)
                         + "\nrun the reduce stage with this job first")


def open_similarity(out: Path, model: str) -> xr.Dataset:
    path = Path(out) / FILENAME
    if not path.is_dir():
        raise StoreError(f"{path}: no similarity store (run the reduce stage first)")
    return xr.open_zarr(path, group=model, consolidated=False, zarr_format=3).load()
