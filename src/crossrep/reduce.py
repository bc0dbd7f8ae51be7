"""The reduction stage: every comparison family of every measure, in parallel with Dask, into similarity.zarr.

The families (crossrep.families) say which representations are compared; each block of a family becomes Dask
tasks: each representation is read and prepared once per measure (and once per sentence-bootstrap replicate),
pairs are scored in chunks. Beside each score: the random-vector baseline of the block's sizes, a permutation
null (the measure with one side's sentence order shuffled, `similarity.permutations` times, from the prepared
forms), the chance-adjusted score (score - null mean) / (1 - null mean), an add-one p-value, and
`similarity.bootstrap` sentence-bootstrap replicates (one resample of sentence positions per replicate, used
on both sides of every pair of every family). Means over languages get percentile intervals from the sentence
bootstrap and from a bootstrap over languages. Results go to `<out>/similarity.zarr` (one xarray Dataset per
model group) and the tables `<out>/similarity.csv`, `<out>/baseline.csv`.
"""

from __future__ import annotations

import functools
import shutil
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from threadpoolctl import ThreadpoolController

from . import families, measures, stats
from . import languages as langs
from .config import Job
from .errors import StoreError
from .families import Layout
from .plan import shards as all_shards
from .store import ActivationStore, ShardKey, id_rows

FILENAME = "similarity.zarr"
LEVEL = 0.95  # the intervals' coverage


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


def shard_point(source, model: str, modality: str, lang: str, point: str) -> tuple[np.ndarray, np.ndarray]:
    """One Dask task: a point of a shard as stored (its sentence ids and rows), read once for every measure,
    sentence set and resample that prepares it (a Zarr read costs milliseconds; the sentence jackknife alone
    prepares each representation G + 1 times per measure). `source`: the store's path (opened once per worker),
    or activations in memory with the store's `ids` and `read`."""
    store = _open(source) if isinstance(source, str) else source
    key = ShardKey(model, modality, lang)
    return store.ids(key), store.read(key, point)


def prepared(stored: tuple, sim: dict, measure: str, rep: list, ids: np.ndarray, resample: tuple | None):
    """One Dask task: a representation (the rows of `ids` of a stored shard point) prepared for a measure (for
    SVCCA its reduced basis), once for every pair it is in; `resample` ("boot", b): on the b-th sentence-bootstrap
    resample; ("jack", g): without the g-th sentence group of the delete-a-group jackknife. BLAS runs one thread
    per task: Dask's workers are the parallelism, and the small products run faster unthreaded."""
    with one_thread():
        xp = array_backend(sim["backend"])
        model, modality, point, lang = rep
        stored_ids, data = stored
        x = data[id_rows(stored_ids, ids, f"{model}/{modality}/{lang}")]
        if resample is not None:
            kind, k = resample
            x = x[stats.resample(sim["seed"], len(ids), k) if kind == "boot"
                  else stats.jackknife_kept(sim["seed"], len(ids), sim["jackknife"], k)]
        try:
            return measures.get(measure).prepare(xp.asarray(x), sim)
        except ValueError as exc:
            raise StoreError(f"{model}/{modality}/{lang} point {point}: {exc}") from None


@functools.lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    """The process's BLAS and OpenMP pools, found once: finding them reads /proc/self/maps (milliseconds), which
    per task cost more than the tasks' arithmetic."""
    return ThreadpoolController()


def one_thread():
    """A context in which BLAS runs on one thread."""
    return _controller().limit(limits=1)


@functools.lru_cache(maxsize=4)
def _open(out: str) -> ActivationStore:
    """The store, opened (and its plan parsed) once per worker process rather than once per task."""
    return ActivationStore(Path(out))


def scores(sim: dict, measure: str, name: str, reps_a: list, reps_b: list | None, pairs: np.ndarray,
           permutations: int) -> np.ndarray:
    """One Dask task: a measure for a chunk of pairs, and its permutation null: (1 + K, len(a), len(b)), NaN
    outside `pairs`; [0] the scores, [1 + k] each pair (i, j) with the b side's sentences in the k-th order of
    its own cell (`name` names the block), so that the chance level's estimation noise is independent across
    cells and averages out over the languages of a mean, instead of shifting every cell of a block alike."""
    m = measures.get(measure)
    reps_b = reps_a if reps_b is None else reps_b
    pairs = [(int(i), int(j)) for i, j in pairs]  # an array in the graph: Dask does not walk it tuple by tuple
    with one_thread():
        out = [m.scores(reps_a, reps_b, pairs)]
        n = m.sentences(reps_a[0])
        for k in range(permutations):
            null = np.full(out[0].shape, np.nan)
            for start in range(0, len(pairs), NULL_BATCH):
                part = pairs[start:start + NULL_BATCH]
                shuffled = [m.permute(reps_b[j], stats.permutation(sim["seed"], name, n, k, i, j))
                            for i, j in part]
                got = m.scores(reps_a, shuffled, [(i, c) for c, (i, _) in enumerate(part)])
                for c, (i, j) in enumerate(part):
                    null[i, j] = got[i, c]
            out.append(null)
    return np.stack(out)


NULL_BATCH = 32  # pairs whose shuffled copies are held at once (a Gram measure's copy is n^2 floats)


def assemble(parts: list[np.ndarray], within: bool, diagonal: bool) -> np.ndarray:
    """A block's (1 + K) or (B,) stack of matrices (or their diagonals) from its chunks' results; `within`: pairs
    within one list (the upper triangle, mirrored); `diagonal`: only (i, i), kept as a vector."""
    out = np.fmax.reduce(np.stack(parts), axis=0)
    if within:
        upper = np.triu_indices(out.shape[-1], 1)
        out[..., upper[1], upper[0]] = out[(...,) + upper]
    if diagonal:
        return np.diagonal(out, axis1=-2, axis2=-1).copy()
    return out


def baseline(sim: dict, measure: str, key: str, n: int, width_a: int, width_b: int) -> np.ndarray:
    seed = zlib.crc32(f"{sim['seed']}/{key}".encode())
    with one_thread():
        return measures.random_baseline(measure, n, width_a, width_b, sim["baseline_repeats"], seed, sim)


PAIRS_PER_TASK = 128  # a block's pairs are split into tasks of this size, for load balance


def _tag(resample: tuple | None) -> str:
    """A resampling as a key part (distributed takes only strings and numbers in keys)."""
    return "main" if resample is None else f"{resample[0]}{resample[1]}"


def _tasks(job: Job, lays: list[Layout], widths: dict, source) -> tuple[dict, dict]:
    """The Dask graph as a plain task dict, and the keys of its results per (measure, variable): per block the
    scores with their null, the bootstrap replicates and the baseline. Plain tasks, not `dask.delayed`: delayed
    calls hash and walk every argument and merge graphs call by call, which cost more than the arithmetic."""
    sim = ("similarity",)
    dsk: dict = {sim: vars(job.similarity)}

    def reps(measure, block_reps, resample):
        if block_reps is None:
            return None
        keys = []
        for rep in block_reps:
            ids = np.array(rep.ids)
            key = ("prepared", measure, rep.model, rep.modality, rep.point, rep.lang, len(ids),
                   zlib.crc32(ids.tobytes()), _tag(resample))  # the same representation on other sentence ids
            if key not in dsk:
                stored = ("stored", rep.model, rep.modality, rep.lang, rep.point)
                if stored not in dsk:
                    dsk[stored] = (shard_point, source, rep.model, rep.modality, rep.lang, rep.point)
                dsk[key] = (prepared, stored, sim, measure, [rep.model, rep.modality, rep.point, rep.lang], ids,
                            resample)
            keys.append(key)
        return keys

    def block_tasks(measure, name, block, resample, permutations):
        a, b = reps(measure, block.a, resample), reps(measure, block.b, resample)
        parts = []
        for c in range(0, len(block.pairs), PAIRS_PER_TASK):
            key = ("scores", measure, name, _tag(resample), c)
            dsk[key] = (scores, sim, measure, name, a, b, np.array(block.pairs[c:c + PAIRS_PER_TASK]), permutations)
            parts.append(key)
        key = ("block", measure, name, _tag(resample))
        dsk[key] = (assemble, parts, block.b is None, block.diagonal)
        return key

    graph = {}
    for me in job.similarity.measures:
        for lay in lays:
            entry = {"main": [block_tasks(me, f"{lay.name}/{i}", blk, None, job.similarity.permutations)
                              for i, blk in enumerate(lay.blocks)],
                     **{kind: [[block_tasks(me, f"{lay.name}/{i}", blk, (kind, k), 0) for k in range(count)]
                               for i, blk in enumerate(lay.blocks)]
                        for kind, count in (("boot", job.similarity.bootstrap),
                                            ("jack", job.similarity.jackknife if lay.resampled else 0))}}
            if lay.baseline:
                entry["baseline"] = []
                for i, blk in enumerate(lay.blocks):
                    other = (blk.b or blk.a)[0]
                    key = ("baseline", me, lay.name, i)
                    dsk[key] = (baseline, sim, me, f"{blk.a[0].model}/{lay.name}/{i}", blk.sentences,
                                widths[blk.a[0].model, blk.a[0].modality, blk.a[0].point],
                                widths[other.model, other.modality, other.point])
                    entry["baseline"].append(key)
            graph[me, lay.name] = entry
    return dsk, graph


def model_dataset(job: Job, store: ActivationStore, model: str) -> xr.Dataset:
    """One model's similarity families for every measure of the job, computed as a Dask graph, as a Dataset.
    `store`: the activation store, or activations in memory with its `model` and `read` (the calibration bench
    runs this graph on simulated activations without writing a store per simulation)."""
    _open.cache_clear()  # a store opened by an earlier reduction in this process may have been remade since
    names = [m.name for m in job.models]
    plan = store.model(model)
    later = tuple(store.model(n) for n in names[names.index(model) + 1:])
    lays = families.layouts(job.similarity.families, families.Context(plan, later))
    widths = {(p.name, mod, pt.name): pt.width for p in (plan,) + later for mod, pts in p.points.items()
              for pt in pts}
    source = str(job.out) if isinstance(store, ActivationStore) else store
    results = compute(*_tasks(job, lays, widths, source), job)
    measures_ = list(job.similarity.measures)
    k, b = job.similarity.permutations, job.similarity.bootstrap
    data, coords = {}, {"measure": _str(measures_)}
    for lay in lays:
        main = np.stack([np.stack([np.asarray(x) for x in results[me, lay.name]["main"]]) for me in measures_])
        main = np.moveaxis(main, 2, 1)  # (measure, 1 + K, blocks, ...)
        score, null = main[:, 0], np.moveaxis(main[:, 1:], 1, -1)  # null: (measure, blocks, ..., K)
        dims = ("measure",) + lay.dims
        with np.errstate(all="ignore"):
            mu = null.mean(axis=-1)
            data[lay.name] = (dims, score)
            data[f"{lay.name}_null_mean"] = (dims, mu)
            data[f"{lay.name}_null_std"] = (dims, null.std(axis=-1, ddof=1))  # K >= 2 (config)
            data[f"{lay.name}_p"] = (dims, np.where(np.isfinite(score), stats.add_one_p(null, score, axis=-1),
                                                    np.nan))
            data[f"{lay.name}_adjusted"] = (dims, (score - mu) / (1.0 - mu))
        for kind, count, dim in (("boot", b, "boot"), ("jack", job.similarity.jackknife if lay.resampled else 0,
                                                         "group")):
            if count:
                reps = np.stack([np.stack([np.stack(blk)[:, 0] for blk in results[me, lay.name][kind]])
                                 for me in measures_])  # (measure, blocks, count, ...)
                data[f"{lay.name}_{kind}"] = (("measure", dim) + lay.dims, np.moveaxis(reps, 2, 1))
        if lay.baseline:
            base = np.stack([np.stack(results[me, lay.name]["baseline"]) for me in measures_])
            data[f"{lay.name}_baseline"] = (("measure", lay.dims[0], "repeat"), base)
        for name, value in lay.coords.items():
            coords[name] = (value[0], _values(value[1])) if isinstance(value, tuple) else _values(value)
    coords["repeat"] = np.arange(job.similarity.baseline_repeats)
    if b:
        coords["boot"] = np.arange(b)
    if job.similarity.jackknife:
        coords["group"] = np.arange(job.similarity.jackknife)
    coords["bound"] = _str(["low", "high"])
    lang_info = {code: langs.get(code) for code in plan.languages}
    coords["lang"] = _str(plan.languages)
    coords["level"] = ("lang", _str([lang_info[c].level for c in plan.languages]))
    coords["family"] = ("lang", _str([lang_info[c].family for c in plan.languages]))
    ds = xr.Dataset(data, coords=coords)
    _add_means(ds, lays, job)
    ds.attrs.update({
        "model": model, "adapter": plan.adapter, "checkpoint": plan.checkpoint, "options": plan.options,
        "variance": job.similarity.variance, "variance_mode": job.similarity.variance_mode,
        "epsilon": job.similarity.epsilon, "knn": job.similarity.knn,
        "permutations": k, "bootstrap": b, "jackknife": job.similarity.jackknife,
        "language_bootstrap": job.analysis.language_bootstrap,
        "crosslingual_sentences": len(plan.crosslingual_ids),
        "crossmodal_sentences": len(next(iter(plan.crossmodal_ids.values()))),
        "layouts": {lay.name: {"family": lay.family, "dims": list(lay.dims), "language_dims": list(lay.language_dims),
                               "columns": lay.columns, "symmetric": lay.symmetric, "model_b": lay.model_b,
                               "description": lay.description} for lay in lays},
        "description": "per variable V: V the score; V_null_mean, V_null_std, V_p the permutation null and the "
                       "add-one p-value; V_adjusted (V - null mean) / (1 - null mean); V_boot sentence-bootstrap "
                       "replicates; V_jack the scores without each sentence group (delete-a-group jackknife); "
                       "V_baseline the measure on random normal arrays of the block's sizes; V_mean "
                       "the mean over languages with V_ci_sentences and V_ci_languages (95 % percentile "
                       "intervals); see the attribute `layouts`",
    })
    return ds


def _add_means(ds: xr.Dataset, lays: list[Layout], job: Job) -> None:
    """V_mean over each variable's language dims, with sentence- and language-bootstrap intervals."""
    count, seed = job.analysis.language_bootstrap, job.analysis.seed
    for lay in lays:
        v = ds[lay.name]
        mean = v.mean(lay.language_dims, skipna=True)
        ds[f"{lay.name}_mean"] = mean
        keep = [d for d in v.dims if d not in lay.language_dims]
        if f"{lay.name}_boot" in ds:
            boots = ds[f"{lay.name}_boot"].mean(lay.language_dims, skipna=True).transpose("boot", *keep).values
            ds[f"{lay.name}_ci_sentences"] = (tuple(keep) + ("bound",), stats.interval(boots, LEVEL))
        values = v.transpose(*keep, *lay.language_dims).values
        draws = stats.language_indices(v.sizes[lay.language_dims[0]], count, seed, lay.name)
        reps = stats.resampled_means(values, len(lay.language_dims) == 2, draws)
        ds[f"{lay.name}_ci_languages"] = (tuple(keep) + ("bound",), stats.interval(reps, LEVEL))


def _values(values) -> np.ndarray:
    values = list(values)
    return _str(values) if values and isinstance(values[0], str) else np.asarray(values)


def compute(dsk: dict, keys, job: Job):
    """Run a task graph on the scheduler the job names, with a progress display: `keys` (nested lists and dicts
    of keys) with each key replaced by its result."""
    from .scheduler import scheduler

    leaves: list = []

    def collect(x):
        if isinstance(x, dict):
            for v in x.values():
                collect(v)
        elif isinstance(x, list):
            for v in x:
                collect(v)
        else:
            leaves.append(x)

    def fill(x, done):
        if isinstance(x, dict):
            return {k: fill(v, done) for k, v in x.items()}
        if isinstance(x, list):
            return [fill(v, done) for v in x]
        return done[x]

    collect(keys)
    with scheduler(job) as run:
        return fill(keys, dict(zip(leaves, run(dsk, leaves))))


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
    """similarity.csv (one row per score: score, chance-adjusted score, null, p-value, bootstrap interval),
    means.csv (means over languages with both intervals) and baseline.csv (the random baselines), every column
    taken from the variables' layouts."""
    rows, means, base = [], [], []
    for model, ds in datasets.items():
        for name, info in ds.attrs["layouts"].items():
            rows.append(_score_rows(ds, model, name, info))
            means.append(_mean_rows(ds, model, name))
            if f"{name}_baseline" in ds:
                b = ds[f"{name}_baseline"]
                frame = xr.Dataset({"mean": b.mean("repeat"), "std": b.std("repeat", ddof=1 if b.sizes["repeat"] > 1
                                                                               else 0)}).to_dataframe()
                frame = frame.reset_index().rename(columns={b.dims[1]: "point"})
                base.append(frame.assign(model=model, family=name)[["model", "measure", "family", "point", "mean",
                                                                     "std"]])
    pd.concat(rows).to_csv(out / "similarity.csv", index=False, float_format="%.8f")
    pd.concat(means).to_csv(out / "means.csv", index=False, float_format="%.8f")
    pd.concat(base).to_csv(out / "baseline.csv", index=False, float_format="%.8f")


def _score_rows(ds: xr.Dataset, model: str, name: str, info: dict) -> pd.DataFrame:
    parts = {"score": ds[name], "adjusted": ds[f"{name}_adjusted"], "null_mean": ds[f"{name}_null_mean"],
             "null_std": ds[f"{name}_null_std"], "p_value": ds[f"{name}_p"]}
    if f"{name}_boot" in ds:
        ci = xr.DataArray(stats.interval(ds[f"{name}_boot"].transpose("boot", ...).values, LEVEL),
                          dims=ds[name].dims + ("bound",))
        parts |= {"boot_low": ci.isel(bound=0), "boot_high": ci.isel(bound=1)}
    frame = xr.Dataset(parts).to_dataframe().reset_index()
    dims = info["dims"]
    if info["symmetric"]:
        order = {v: i for i, v in enumerate(ds[dims[-2]].values)}
        frame = frame[frame[dims[-2]].map(order) < frame[dims[-1]].map(order)]
    frame = frame[np.isfinite(frame["score"])]
    cols = {c: frame[src].values for c, src in info["columns"].items()}
    keep = ["score", "adjusted", "null_mean", "null_std", "p_value"] + (["boot_low", "boot_high"]
                                                                        if "boot_low" in frame else [])
    return pd.DataFrame({"model": model, "model_b": info["model_b"] or model, "measure": frame["measure"].values,
                         "family": name, **cols, **{k: frame[k].values for k in keep}})


def _mean_rows(ds: xr.Dataset, model: str, name: str) -> pd.DataFrame:
    parts = {"mean": ds[f"{name}_mean"]}
    for source in ("sentences", "languages"):
        if f"{name}_ci_{source}" in ds:
            ci = ds[f"{name}_ci_{source}"]
            parts |= {f"{source}_low": ci.isel(bound=0, drop=True), f"{source}_high": ci.isel(bound=1, drop=True)}
    frame = xr.Dataset(parts).to_dataframe().reset_index()
    return frame.assign(model=model, family=name)


def similarity_settings(job: Job) -> dict:
    """What similarity.zarr was computed with: the job's similarity keys that change its numbers."""
    keep = ("measures", "knn", "variance", "variance_mode", "epsilon", "baseline_repeats", "seed", "families",
            "permutations", "bootstrap", "jackknife")
    out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(job.similarity).items() if k in keep}
    return out | {"language_bootstrap": job.analysis.language_bootstrap, "analysis_seed": job.analysis.seed}


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
