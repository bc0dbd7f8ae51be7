"""similarity.zarr: the reduction's results, as crossrep.store owns activations.zarr.

This module owns the format: one xarray Dataset per model (a Zarr v3 group), its variable names (`var`, `Part`,
`View`), the settings the results were computed with and their check, the tables similarity.csv, means.csv and
baseline.csv. The numbers come from crossrep.reduce; analysis reads them through here.

Per family layout V (see crossrep.families): V the score (measure, *dims); V_null_mean, V_null_std, V_p the
permutation null and the add-one p-value; V_adjusted (V - null mean) / (1 - null mean); V_boot the sentence
bootstrap replicates; V_jack the scores without each sentence group (delete-a-group jackknife); V_speakers the
scores with each key's recording redrawn (dim `draw`; `data.utterances: all`), V_ci_speakers the interval of
the mean over those redraws; V_baseline the measure on random normal arrays of the block's sizes; V_mean the
mean over languages with V_ci_sentences and V_ci_languages (95 % percentile intervals).

Per readout R (crossrep.readout: retrieval_* with a leading `scoring` dim, probe_*): R the accuracy; R_chance its
chance level (retrieval 1/N; probes the label-permutation mean) and, for probes, R_p the add-one p-value; R_ci the
sentence-bootstrap interval of each cell; for retrieval over languages R_mean with R_ci_sentences and
R_ci_languages as for the families, and R_mean_boot the mean's sentence-bootstrap replicates (dim `resample`;
R_boot every cell's, for readouts with one language dim).
"""

from __future__ import annotations

import shutil
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from . import languages as langs
from . import measures, progress, readout, stats
from .config import Job
from .errors import StoreError
from .paths import portable
from .reduce import Reduced, check_complete, model_arrays
from .store import ActivationStore

FILENAME = "similarity.zarr"
LEVEL = 0.95  # the intervals' coverage
TABLES = ("similarity.csv", "means.csv", "baseline.csv")


class Part(str, Enum):
    """What a variable of a family layout holds (its name: the layout's name, then `_` and the part)."""

    SCORE = ""
    NULL_MEAN = "null_mean"
    NULL_STD = "null_std"
    P = "p"
    ADJUSTED = "adjusted"
    BOOT = "boot"
    JACK = "jack"
    SPEAKERS = "speakers"
    BASELINE = "baseline"
    MEAN = "mean"
    CHANCE = "chance"
    CI = "ci"
    MEAN_BOOT = "mean_boot"
    CI_SENTENCES = "ci_sentences"
    CI_LANGUAGES = "ci_languages"
    CI_SPEAKERS = "ci_speakers"


def var(layout: str, part: Part = Part.SCORE) -> str:
    """The Dataset variable name of a layout's part."""
    return layout if part is Part.SCORE else f"{layout}_{part.value}"


def _part(p: Part):
    return property(lambda self: self.ds.get(var(self.layout, p)), doc=f"the {p.name.lower()} (None if absent)")


class View:
    """A layout's variables in a model's Dataset, by part: `View(ds, "crossmodal").adjusted.sel(pair=...)`."""

    def __init__(self, ds: xr.Dataset, layout: str):
        if layout not in ds:
            raise KeyError(f"{layout!r}: no such family layout or readout in this Dataset (have "
                           f"{', '.join([*ds.attrs.get('layouts', {}), *ds.attrs.get('readouts', {})])})")
        self.ds, self.layout = ds, layout

    score = _part(Part.SCORE)
    null_mean = _part(Part.NULL_MEAN)
    null_std = _part(Part.NULL_STD)
    p = _part(Part.P)
    adjusted = _part(Part.ADJUSTED)
    boot = _part(Part.BOOT)
    jack = _part(Part.JACK)
    speakers = _part(Part.SPEAKERS)
    baseline = _part(Part.BASELINE)
    mean = _part(Part.MEAN)
    chance = _part(Part.CHANCE)
    ci = _part(Part.CI)
    mean_boot = _part(Part.MEAN_BOOT)
    ci_sentences = _part(Part.CI_SENTENCES)
    ci_languages = _part(Part.CI_LANGUAGES)
    ci_speakers = _part(Part.CI_SPEAKERS)


def view(ds: xr.Dataset, layout: str) -> View:
    return View(ds, layout)


# ---------------------------------------------------------------- building


def dataset(job: Job, reduced: Reduced) -> xr.Dataset:
    """A model's Dataset from the reduction's numbers."""
    plan, lays = reduced.plan, reduced.layouts
    sim = job.similarity
    data, coords = {}, {"measure": _str(sim.measure_names)}
    for lay in lays:
        a = reduced.arrays[lay.name]
        score, null = a["score"], a["null"]
        dims = ("measure",) + lay.dims
        with np.errstate(all="ignore"):
            mu = null.mean(axis=-1)
            data[var(lay.name)] = (dims, score)
            data[var(lay.name, Part.NULL_MEAN)] = (dims, mu)
            data[var(lay.name, Part.NULL_STD)] = (dims, null.std(axis=-1, ddof=1))  # K >= 2 (config)
            data[var(lay.name, Part.P)] = (dims, np.where(np.isfinite(score),
                                                          stats.add_one_p(null, score, axis=-1), np.nan))
            data[var(lay.name, Part.ADJUSTED)] = (dims, (score - mu) / (1.0 - mu))
        for part, dim in ((Part.BOOT, "boot"), (Part.JACK, "group"), (Part.SPEAKERS, "draw")):
            if part.value in a:
                data[var(lay.name, part)] = (("measure", dim) + lay.dims, a[part.value])
        if "baseline" in a:
            data[var(lay.name, Part.BASELINE)] = (("measure", lay.dims[0], "repeat"), a["baseline"])
        for name, value in lay.coords.items():
            coords[name] = (value[0], _values(value[1])) if isinstance(value, tuple) else _values(value)
    coords["repeat"] = np.arange(sim.baseline_repeats)
    if sim.bootstrap:
        coords["boot"] = np.arange(sim.bootstrap)
    if sim.jackknife:
        coords["group"] = np.arange(sim.jackknife)
    if sim.speakers:
        coords["draw"] = np.arange(sim.speakers)
    coords["bound"] = _str(["low", "high"])
    info = {code: langs.get(code) for code in plan.languages}
    coords["lang"] = _str(plan.languages)
    coords["level"] = ("lang", _str([langs.level(c, job.data.levels) for c in plan.languages]))
    coords["family"] = ("lang", _str([info[c].family for c in plan.languages]))
    ds = xr.Dataset(data, coords=coords)
    _add_means(ds, lays, job)
    ds.attrs.update({
        "model": plan.name, "adapter": plan.adapter, "checkpoint": portable(plan.checkpoint, job.out),
        "options": portable(plan.options, job.out),
        "measures": {m.name: m.params() for m in measures.resolve(sim)},
        "permutations": sim.permutations, "bootstrap": sim.bootstrap, "jackknife": sim.jackknife,
        "speakers": sim.speakers, "utterances": job.data.utterances,
        "language_bootstrap": job.analysis.language_bootstrap,
        "crosslingual_sentences": len(plan.crosslingual_ids),
        "crossmodal_sentences": len(next(iter(plan.crossmodal_ids.values()))),
        "layouts": {lay.name: {"family": lay.family, "dims": list(lay.dims), "language_dims": list(lay.language_dims),
                               "columns": lay.columns, "symmetric": lay.symmetric, "model_b": lay.model_b,
                               "description": lay.description} for lay in lays},
        "description": __doc__.split("\n\n", 2)[2].strip().replace("\n", " "),
    })
    return ds


def _add_means(ds: xr.Dataset, lays, job: Job) -> None:
    """V_mean over each variable's language dims, with sentence- and language-bootstrap intervals and, with
    speaker redraws, the interval of the mean over them."""
    count, seed = job.analysis.language_bootstrap, job.analysis.seed
    for lay in lays:
        v = ds[lay.name]
        ds[var(lay.name, Part.MEAN)] = v.mean(lay.language_dims, skipna=True)
        keep = [d for d in v.dims if d not in lay.language_dims]
        for part, dim, ci in ((Part.BOOT, "boot", Part.CI_SENTENCES), (Part.SPEAKERS, "draw", Part.CI_SPEAKERS)):
            if var(lay.name, part) in ds:
                means = ds[var(lay.name, part)].mean(lay.language_dims, skipna=True).transpose(dim, *keep).values
                ds[var(lay.name, ci)] = (tuple(keep) + ("bound",), stats.interval(means, LEVEL))
        values = v.transpose(*keep, *lay.language_dims).values
        draws = stats.language_indices(v.sizes[lay.language_dims[0]], count, seed, lay.name)
        reps = stats.resampled_means(values, len(lay.language_dims) == 2, draws)
        ds[var(lay.name, Part.CI_LANGUAGES)] = (tuple(keep) + ("bound",), stats.interval(reps, LEVEL))


def _values(values) -> np.ndarray:
    values = list(values)
    return _str(values) if values and isinstance(values[0], str) else np.asarray(values)


def _str(values) -> np.ndarray:
    """Strings as Zarr v3's variable-length UTF-8 (fixed-width numpy strings have no v3 specification)."""
    return np.array(list(values), dtype=object)


def model_dataset(job: Job, store, model: str) -> xr.Dataset:
    """One model's results, computed (crossrep.reduce.model_arrays, crossrep.readout.model_tables) and named."""
    ds = dataset(job, model_arrays(job, store, model))
    add_readouts(ds, readout.model_tables(job, store, model), job)
    return ds


def add_readouts(ds: xr.Dataset, tables: list, job: Job) -> None:
    """The retrieval and probe variables (module docstring), with their intervals and means over languages."""
    count, seed = job.analysis.language_bootstrap, job.analysis.seed
    info = {}
    if any(t.lead for t in tables):
        ds.coords["scoring"] = _str(job.retrieval.scorings)
    for t in tables:
        dims = t.lead + t.dims
        for name, value in t.coords.items():
            if name not in ds.coords:
                ds.coords[name] = (value[0], _values(value[1])) if isinstance(value, tuple) else _values(value)
        ds[var(t.name)] = (dims, t.score)
        ds[var(t.name, Part.CHANCE)] = (dims, t.chance)
        if t.p is not None:
            ds[var(t.name, Part.P)] = (dims, t.p)
        if t.boot is not None:
            boot_axis = len(t.lead)
            ds[var(t.name, Part.CI)] = (dims + ("bound",), stats.interval(t.boot, LEVEL, axis=boot_axis))
            if len(t.language_dims) == 1:  # per-language cells: small enough to keep every replicate
                ds[var(t.name, Part.BOOT)] = (t.lead + ("resample",) + t.dims, t.boot)
        if t.language_dims:
            v = ds[t.name]
            keep = [d for d in v.dims if d not in t.language_dims]
            ds[var(t.name, Part.MEAN)] = v.mean(t.language_dims, skipna=True)
            if t.boot is not None:
                boots = xr.DataArray(t.boot, dims=t.lead + ("resample",) + t.dims)
                means = boots.mean(t.language_dims, skipna=True).transpose("resample", *keep)
                ds[var(t.name, Part.MEAN_BOOT)] = means
                ds[var(t.name, Part.CI_SENTENCES)] = (tuple(keep) + ("bound",), stats.interval(means.values, LEVEL))
            values = v.transpose(*keep, *t.language_dims).values
            draws = stats.language_indices(v.sizes[t.language_dims[0]], count, seed, t.name)
            reps = stats.resampled_means(values, len(t.language_dims) == 2, draws)
            ds[var(t.name, Part.CI_LANGUAGES)] = (tuple(keep) + ("bound",), stats.interval(reps, LEVEL))
        info[t.name] = {"kind": "retrieval" if t.lead else "probe", "dims": list(dims),
                        "language_dims": list(t.language_dims), "description": t.description}
    ds.attrs["readouts"] = info
    ds.attrs["retrieval"] = {**vars(job.retrieval), "scorings": list(job.retrieval.scorings)}
    ds.attrs["probes"] = vars(job.probes).copy()


# ---------------------------------------------------------------- writing and reading


def write(job: Job) -> Path:
    """The reduce stage: reduce a complete activation store into `<out>/similarity.zarr` and the CSV tables,
    after checking that the job describes the store and that every chunk verifies. The old results stay until
    the new ones are whole."""
    from .plan import open_checked

    store = open_checked(job)
    check_complete(job, store)
    with progress.stage("verify activations.zarr"):
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
    root = zarr.open_group(str(tmp), mode="r+", zarr_format=3)
    root.attrs["crossrep"] = settings(job)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    write_tables(datasets, job.out)
    return target


def settings(job: Job) -> dict:
    """What similarity.zarr records of its computation: every setting that changes its numbers, each measure
    with all of its parameters (taken from the measure objects, so a new parameter needs no list here)."""
    sim = job.similarity
    return {
        "models": [m.name for m in job.models],
        "measures": {m.name: m.params() for m in measures.resolve(sim)},
        "similarity": {"families": list(sim.families), "baseline_repeats": sim.baseline_repeats, "seed": sim.seed,
                       "permutations": sim.permutations, "bootstrap": sim.bootstrap, "jackknife": sim.jackknife,
                       **({"speakers": sim.speakers} if sim.speakers else {})},
        "analysis": {"language_bootstrap": job.analysis.language_bootstrap, "seed": job.analysis.seed},
        "data": {"levels": dict(job.data.levels)},
        "retrieval": {**vars(job.retrieval), "scorings": list(job.retrieval.scorings)},
        "probes": vars(job.probes).copy(),
    }


def check(job: Job) -> None:
    """Refuse a job whose settings differ from those similarity.zarr was computed with, naming each key."""
    path = job.out / FILENAME
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path}: no similarity store (run the reduce stage first)")
    stored = zarr.open_group(str(path), mode="r", zarr_format=3).attrs.get("crossrep", {})
    wanted = settings(job)
    diff = []
    if stored.get("models") != wanted["models"]:
        diff.append(f"models: stored {stored.get('models')!r}, requested {wanted['models']!r}")
    old = stored.get("measures") or {}
    if list(old) != list(wanted["measures"]):
        diff.append(f"similarity.measures: stored {list(old)!r}, requested {list(wanted['measures'])!r}")
    for name, params in wanted["measures"].items():
        if name in old:
            diff += [f"similarity.measures.{name}.{k}: stored {old[name].get(k, '(absent)')!r}, requested {v!r}"
                     for k, v in params.items() if old[name].get(k, ...) != v]
    for section in ("similarity", "analysis", "retrieval", "probes", "data"):
        have = stored.get(section) or {}
        diff += [f"{section}.{k}: stored {have.get(k, '(absent)')!r}, requested {v!r}"
                 for k, v in wanted[section].items() if have.get(k, ...) != v]
    if diff:
        raise StoreError(f"{path}: computed with other settings; it differs in:\n  " + "\n  ".join(diff)
                         + "\nrun the reduce stage with this job first")


def open_model(out: Path, model: str, load: bool = True) -> xr.Dataset:
    """A model's Dataset from `<out>/similarity.zarr` (lazy Dask arrays with `load=False`)."""
    path = Path(out) / FILENAME
    if not path.is_dir():
        raise StoreError(f"{path}: no similarity store (run the reduce stage first)")
    models = zarr.open_group(str(path), mode="r", zarr_format=3).attrs.get("crossrep", {}).get("models", [])
    if model not in models:
        raise StoreError(f"{path}: no model {model!r} (have {', '.join(models)})")
    ds = xr.open_zarr(path, group=model, consolidated=False, zarr_format=3)
    return ds.load() if load else ds


# ---------------------------------------------------------------- tables


def write_tables(datasets: dict[str, xr.Dataset], out: Path) -> None:
    """similarity.csv (one row per score: score, chance-adjusted score, null, p-value, bootstrap interval, and
    the range of the speaker redraws where computed), means.csv (means over languages with their intervals) and
    baseline.csv (the random baselines), every column
    taken from the variables' layouts."""
    rows, means, base = [], [], []
    for model, ds in datasets.items():
        for name, info in ds.attrs["layouts"].items():
            rows.append(_score_rows(ds, model, name, info))
            means.append(_mean_rows(ds, model, name))
            b = view(ds, name).baseline
            if b is not None:
                frame = xr.Dataset({"mean": b.mean("repeat"), "std": b.std("repeat", ddof=1 if b.sizes["repeat"] > 1
                                                                               else 0)}).to_dataframe()
                frame = frame.reset_index().rename(columns={b.dims[1]: "point"})
                base.append(frame.assign(model=model, family=name)[["model", "measure", "family", "point", "mean",
                                                                     "std"]])
    pd.concat(rows).to_csv(out / TABLES[0], index=False, float_format="%.8f")
    pd.concat(means).to_csv(out / TABLES[1], index=False, float_format="%.8f")
    pd.concat(base).to_csv(out / TABLES[2], index=False, float_format="%.8f")


def _score_rows(ds: xr.Dataset, model: str, name: str, info: dict) -> pd.DataFrame:
    v = view(ds, name)
    parts = {"score": v.score, "adjusted": v.adjusted, "null_mean": v.null_mean, "null_std": v.null_std,
             "p_value": v.p}
    for reps, dim, label in ((v.boot, "boot", "boot"), (v.speakers, "draw", "speakers")):
        if reps is not None:
            ci = xr.DataArray(stats.interval(reps.transpose(dim, ...).values, LEVEL), dims=v.score.dims + ("bound",))
            parts |= {f"{label}_low": ci.isel(bound=0), f"{label}_high": ci.isel(bound=1)}
    frame = xr.Dataset(parts).to_dataframe().reset_index()
    dims = info["dims"]
    if info["symmetric"]:
        order = {x: i for i, x in enumerate(ds[dims[-2]].values)}
        frame = frame[frame[dims[-2]].map(order) < frame[dims[-1]].map(order)]
    frame = frame[np.isfinite(frame["score"])]
    cols = {c: frame[src].values for c, src in info["columns"].items()}
    keep = ["score", "adjusted", "null_mean", "null_std", "p_value"] + [
        f"{label}_{end}" for label in ("boot", "speakers") for end in ("low", "high") if f"{label}_low" in frame]
    return pd.DataFrame({"model": model, "model_b": info["model_b"] or model, "measure": frame["measure"].values,
                         "family": name, **cols, **{k: frame[k].values for k in keep}})


def _mean_rows(ds: xr.Dataset, model: str, name: str) -> pd.DataFrame:
    v = view(ds, name)
    parts = {"mean": v.mean}
    for source, ci in (("sentences", v.ci_sentences), ("languages", v.ci_languages), ("speakers", v.ci_speakers)):
        if ci is not None:
            parts |= {f"{source}_low": ci.isel(bound=0, drop=True), f"{source}_high": ci.isel(bound=1, drop=True)}
    frame = xr.Dataset(parts).to_dataframe().reset_index()
    return frame.assign(model=model, family=name)
