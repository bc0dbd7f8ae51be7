"""The aggregate stage: figures, t-SNE, the token-sharing analysis, the six findings tested
(`<out>/findings.json`, `<out>/findings.csv`) and the report (`<out>/report/index.html`)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from crossrep import measures, progress, results
from crossrep.config import Job
from crossrep.paths import portable
from crossrep.plan import open_checked
from crossrep.version import __version__

from . import figures, findings, lens, readouts, report, tokens, tsne


def run(job: Job) -> Path:
    """Draw into a scratch folder, then move into `<out>/figures/`, where figures of earlier jobs that this one
    does not draw are removed (files that crossrep did not write are left alone); then findings and report."""
    started = datetime.now(timezone.utc)
    store = open_checked(job)
    results.check(job)
    target = job.out / "figures"
    out = job.out / ".figures.partial"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    full = {m.name: results.open_model(job.out, m.name) for m in job.models}
    a = job.analysis
    names = job.similarity.measure_names
    with progress.bar(5, "aggregate", "step") as bar:
        with progress.stage("aggregate: figures"):
            figures.draw(full, out, names, a.language_bootstrap, a.seed)
            readout_figures = readouts.draw(full, out, a.language_bootstrap, a.seed)
            lens_record = _lens(job, store, out)
        bar.update()
        with progress.stage("aggregate: t-SNE"):
            tsne.run(job, out)
        bar.update()
        with progress.stage("aggregate: token sharing"):
            sharing = _token_sharing(job, full, out)
        bar.update()
        with progress.stage("aggregate: findings"):
            decided = _findings(job, store, full, sharing)
            drawn = _move_figures(out, target)
            record = _record(job, store, decided, started, drawn)
            record["readouts"] = _readouts(job, full, readout_figures)
            record["lens"] = lens_record
            _write_json(job.out / "findings.json", record)
            pd.DataFrame(findings.as_dicts(decided)).to_csv(job.out / "findings.csv", index=False,
                                                            float_format="%.6g")
        bar.update()
        with progress.stage("aggregate: report"):
            page = report.run(job)
        bar.update()
    return page


def _token_sharing(job: Job, full: dict, out: Path) -> dict:
    """Each model's shared-token ratios (None where it has no tokenizer) and fig6_tokens per measure."""
    a = job.analysis
    sharing = {m.name: tokens.token_sharing(job, m.name) for m in job.models}
    for k, measure in enumerate(job.similarity.measure_names):  # each measure its own figure, as the others
        panels = []
        for name, share in sharing.items():
            if share is None:
                continue
            ds = full[name].sel(measure=measure)
            point = findings.input_text_point(ds)
            if point is not None:
                sim = ds.text.sel(text_point=point)
                levels = dict(zip(map(str, ds.lang.values), map(str, ds.level.values)))
                panels.append((name, share, sim, tokens.correlate(share, sim, levels, a.language_bootstrap,
                                                                  a.seed)))
        if panels:
            tokens.scatter(panels, out / ("fig6_tokens" + ("" if k == 0 else f"_{measure}")), measure)
    return sharing


def _findings(job: Job, store, full: dict, sharing: dict) -> list:
    tested = []
    for m in job.models:
        tested += findings.test_model(full[m.name], m.name, store.model(m.name).adapter, sharing[m.name])
    suffixes = {measure: ("" if k == 0 else f"_{measure}") for k, measure in enumerate(job.similarity.measure_names)}
    return findings.decide(tested, job.analysis.alpha, suffixes)


def _readouts(job: Job, full: dict, drawn: list[str]) -> dict:
    """What the report's "Retrieval and probes" section states: per model and scoring the depth at which speech
    first retrieves its own transcript above chance (analysis.readouts), and each probe at its last point and
    at its best."""
    tests = [readouts.onset_tests(full[m.name], m.name, job.analysis.alpha) for m in job.models]
    tests = pd.concat([t for t in tests if len(t)]) if any(len(t) for t in tests) else pd.DataFrame()
    if len(tests):
        tests.to_csv(job.out / "retrieval_onset.csv", index=False, float_format="%.6g")
    probe_rows = []
    for m in job.models:
        ds = full[m.name]
        for name, dim, _, label in readouts.PROBES:
            if name not in ds:
                continue
            v = results.view(ds, name)
            for which, idx in (("last", -1), ("best", int(np.nanargmax(v.score.values))
                                             if np.isfinite(v.score.values).any() else -1)):
                ci = v.ci.isel({dim: idx}).values if v.ci is not None else (np.nan, np.nan)
                probe_rows.append({"model": m.name, "probe": name, "label": label, "which": which,
                                   "point": str(ds[dim].values[idx]), "accuracy": float(v.score.values[idx]),
                                   "low": float(ci[0]), "high": float(ci[1]), "chance": float(v.chance.values[idx]),
                                   "p": float(v.p.values[idx])})
    return {"onset": tests.to_dict("records") if len(tests) else [], "probes": probe_rows,
            "figures": drawn, "retrieval": job.to_dict()["retrieval"], "probe_settings": job.to_dict()["probes"]}


def _lens(job: Job, store, out: Path) -> dict:
    """What the report's "Logit lens" section states: per lens model the onset tests (lens_onset.csv), fig10_lens,
    and the lens's 5 most probable tokens of the mean audio state at every point for the first sentence of the
    first language (decoded by the model's tokenizer)."""
    from crossrep import lensdata
    from crossrep.models import adapter_class

    tables, top = {}, []
    for name in job.analysis.lens.models:
        ds = lensdata.dataset(store, name)
        tables[name] = lens.onset_tests(ds, name, job.analysis.alpha, job.analysis.seed)
        plan = store.model(name)
        first = ds.isel(lang=0).dropna("sentence", subset=["recall_1"]).isel(sentence=0)
        texts = adapter_class(plan.adapter).token_texts(plan.checkpoint, plan.options,
                                                        [int(i) for i in first.top_ids.values.ravel()])
        for j, point in enumerate(ds.point.values):
            top.append({"model": name, "lang": str(first.lang.values), "sentence": int(first.sentence.values),
                        "point": str(point), "tokens": texts[j * first.sizes["rank"]:(j + 1) * first.sizes["rank"]]})
    if not tables:
        return {}
    table = pd.concat(tables.values())
    table.to_csv(job.out / "lens_onset.csv", index=False, float_format="%.6g")
    drawn = lens.draw(tables, out)
    return {"onset": table.to_dict("records"), "top": top, "figures": [drawn] if drawn else [],
            "settings": job.to_dict()["analysis"]["lens"]}


def _move_figures(out: Path, target: Path) -> set[str]:
    """The drawn figures into `target`, where figures of earlier jobs that this one did not draw are removed
    (files that crossrep did not write are left alone)."""
    target.mkdir(exist_ok=True)
    drawn = {f.name for f in out.iterdir()}
    for old in target.iterdir():
        if old.name.startswith(("fig", "crosslayer_")) and old.suffix in (".png", ".pdf", ".csv") \
                and old.name not in drawn:
            old.unlink()
    for name in drawn:
        (out / name).replace(target / name)
    out.rmdir()
    return drawn


def _record(job: Job, store, results, started, drawn) -> dict:
    sim, a = job.similarity, job.analysis
    models = []
    for m in job.models:
        plan = store.model(m.name)
        models.append({"name": m.name, "adapter": plan.adapter, "checkpoint": portable(plan.checkpoint, job.out),
                       "languages": list(plan.languages),
                       "crossmodal_sentences": len(next(iter(plan.crossmodal_ids.values()))),
                       "crosslingual_sentences": len(plan.crosslingual_ids),
                       "points": {mod: [p.name for p in pts] for mod, pts in plan.points.items()}})
    extra = [{"file": f, "caption": caption} for f, caption in (
        ("fig4_tsne.png", "t-SNE of text and speech at a middle layer (colour: language family; marker: modality)"),
        ("fig6_tokens.png", "token-sharing ratio against text similarity at the input embeddings"),
        ("crosslayer_text_speech.png", "cross-layer: text point vs speech point, mean over languages"),
        ("crosslayer_text.png", "cross-layer: text point vs text point, mean over languages"),
        ("crosslayer_speech.png", "cross-layer: speech point vs speech point, mean over languages"),
    ) if f in drawn]
    return {
        "crossrep_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "job": job.name, "alpha": a.alpha, "language_bootstrap": a.language_bootstrap,
        "multiplicity": _multiplicity(results, a.alpha), "jackknife": sim.jackknife, "speakers": speaker_scheme(job),
        "calibration": _calibration(),
        "permutations": sim.permutations, "bootstrap": sim.bootstrap, "seed": a.seed,
        "findings": [f | {"figures": [name for name in f["figures"] if name in drawn]} for f in findings.describe()],
        "results": findings.as_dicts(results), "figures": extra,
        "methods": {"models": models, "measures": [m.settings() for m in measures.resolve(sim)],
                    "invariances": {m.name: list(m.invariances) for m in measures.resolve(sim)},
                    "families": list(sim.families), "similarity": job.to_dict()["similarity"],
                    "analysis": {"alpha": a.alpha, "language_bootstrap": a.language_bootstrap, "seed": a.seed,
                                 "tsne": {"points": dict(a.tsne.points), "seed": a.tsne.seed,
                                          "perplexity": a.tsne.perplexity}},
                    "seeds": {"data": job.data.seed, "similarity": sim.seed, "analysis": a.seed, "tsne": a.tsne.seed},
                    "started": started.isoformat(timespec="seconds"),
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")},
    }


def speaker_scheme(job) -> str:
    """Which speakers the comparisons used and how the tests treat them, in words for the report."""
    kept = f"each key's recording kept with data.seed {job.data.seed}"
    if job.data.utterances == "one":
        return (f"one recording per key ({kept}; data.utterances: one): which speaker read a key is part of each "
                f"language's own variation, inside the language jackknife")
    s = job.similarity.speakers
    if not s:
        return (f"every recording stored (data.utterances: all); comparisons use {kept}; no speaker redraws "
                f"(similarity.speakers: 0)")
    return (f"every recording stored (data.utterances: all); comparisons use {kept}, and the tests add the part "
            f"that languages share of the variance over {s} redraws of each key's recording (similarity.speakers)")


def _calibration() -> dict | None:
    """The calibration table installed with this version (bench/calibration.py --write), quoted by the report."""
    path = Path(__file__).with_name("calibration.json")
    return json.loads(path.read_text()) if path.is_file() else None


def _multiplicity(results, alpha: float) -> dict:
    """What the summary says of the adjustment: the family, the method, how many tests and how many hold."""
    tested = [r for r in results if r.p_adjusted is not None]
    return {"family": "each finding over every model and measure of this report",
            "method": "Holm's step-down (family-wise error rate at alpha under any dependence)", "alpha": alpha,
            "tests": len(tested), "families": len({r.finding for r in tested}),
            "holds": sum(r.verdict == "holds" for r in tested),
            "does_not_hold": sum(r.verdict == "does not hold" for r in tested),
            "holds_unadjusted": sum(r.p_value is not None and r.p_value < alpha and (r.value or 0) > 0
                                    for r in tested)}


def _write_json(path: Path, record: dict) -> None:
    tmp = path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)
