"""Retrieval and probes in the report: the depth at which speech first retrieves its own transcript above chance
(per model and scoring), and the figures: retrieval over depth (cross-modal by resource level, cross-lingual),
a language-by-language retrieval heatmap at the last cross-modal pair, probe accuracy over depth.

The onset test, per cross-modal pair: the mean over languages of (accuracy - 1/N), a two-sided t test of 0 whose
standard error adds the delete-one jackknife over languages (languages are the units; each language's own
sentence noise is in it) and the part of the sentence-bootstrap variance of the mean that languages share (the
same sentences in every language), Welch-Satterthwaite degrees of freedom, as the findings test. Holm's
step-down over the pairs of a model and scoring; the onset is the first pair in depth order that holds (adjusted
p < alpha and above chance), and its interval is taken at the level Holm compared it with, so the interval
excludes chance exactly when the test rejects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from crossrep import results, stats

from .figures import COLORS, _axes, _band, _save, _ticks

LEVELS = ("high", "medium", "low")


def shared_sentence_component(boot: np.ndarray) -> stats.Component | None:
    """(B, L) bootstrap replicates of per-language accuracies: the variance of their mean less each language's
    own part, (1/L^2) sum_l var(boot_l) (already in the language jackknife); None when nothing is shared."""
    b = boot[:, np.isfinite(boot).all(axis=0)]
    if b.shape[0] < 2 or b.shape[1] < 1:
        return None
    shared = b.mean(axis=1).var(ddof=1) - b.var(axis=0, ddof=1).sum() / b.shape[1] ** 2
    return stats.Component("sentences (shared by languages)", float(shared), float(b.shape[0] - 1)) \
        if shared > 0 else None


def above_chance(acc: np.ndarray, chance: np.ndarray, boot: np.ndarray | None) -> stats.TTest:
    """The t test of mean(acc - chance) = 0 over languages (module docstring); `boot` (B, L) or None."""
    keep = np.isfinite(acc)
    d = (acc - chance)[keep]
    comps = stats.jackknife(lambda idx: float(d[idx].mean()), d.size)
    if boot is not None:
        comps.append(shared_sentence_component(boot[:, keep]))
    return stats.t_test(float(d.mean()) if d.size else float("nan"), comps)


def onset_tests(ds, model: str, alpha: float) -> pd.DataFrame:
    """Per scoring and cross-modal pair: the test of speech retrieving its own transcript above chance, Holm over
    the model's pairs, the interval at Holm's level; and `onset`: the first pair in depth order that holds."""
    name = "retrieval_crossmodal"
    if name not in ds:
        return pd.DataFrame()
    v = results.view(ds, name)
    rows = []
    for scoring in ds.scoring.values:
        tests = []
        for pair in ds.pair.values:
            acc = v.score.sel(scoring=scoring, pair=pair).values
            if not np.isfinite(acc).any():
                continue
            chance = v.chance.sel(scoring=scoring, pair=pair).values
            boot = v.boot.sel(scoring=scoring, pair=pair).transpose("resample", "lang").values \
                if v.boot is not None else None
            tests.append((str(pair), float(ds.pair_depth.sel(pair=pair)), float(np.nanmean(chance)),
                          above_chance(acc, chance, boot)))
        adjusted, level = stats.holm([t.p for *_, t in tests], alpha)
        onset = None
        for (pair, depth, chance, t), p_adj, lvl in sorted(zip(tests, adjusted, level), key=lambda x: x[0][1]):
            low, high = t.interval(lvl) if np.isfinite(lvl) else (np.nan, np.nan)
            holds = bool(np.isfinite(p_adj) and p_adj < alpha and t.estimate > 0)
            if holds and onset is None:
                onset = pair
            rows.append({"model": model, "scoring": str(scoring), "pair": pair, "depth": depth,
                         "accuracy": t.estimate + chance, "chance": chance, "low": low + chance,
                         "high": high + chance, "confidence": 1 - lvl if np.isfinite(lvl) else np.nan,
                         "se": t.se, "df": t.df, "p": t.p, "p_adjusted": p_adj, "above_chance": holds,
                         "onset": False})
        if onset is not None:
            for r in rows:
                if r["model"] == model and r["scoring"] == str(scoring) and r["pair"] == onset:
                    r["onset"] = True
    return pd.DataFrame(rows)


def _mean_frame(ds, name: str, dim: str) -> pd.DataFrame:
    v = results.view(ds, name)
    frame = v.mean.to_dataframe(name="mean").reset_index()
    for source, ci in (("sentences", v.ci_sentences), ("languages", v.ci_languages)):
        if ci is not None:
            frame[f"{source}_low"] = ci.isel(bound=0).values.ravel()
            frame[f"{source}_high"] = ci.isel(bound=1).values.ravel()
    frame["chance"] = v.chance.mean([d for d in v.chance.dims if d not in ("scoring", dim)]).values.ravel()
    frame["depth"] = frame[dim].map(dict(zip(ds[dim].values, ds[dim.replace("_point", "_depth").replace(
        "pair", "pair_depth")].values)))
    return frame.assign(family=name)


def fig7(datasets: dict, out: Path, count: int, seed: int) -> str | None:
    """Retrieval accuracy over depth per model: cross-modal (speech -> own transcript) by resource level, and
    cross-lingual (text -> text, speech -> speech, speech -> text of another language), chance drawn."""
    have = {m: ds for m, ds in datasets.items() if "retrieval_crossmodal" in ds}
    if not have:
        return None
    fig, axes = _axes(len(have), height=4.0)
    frames = []
    for ax, (model, ds) in zip(axes, have.items()):
        scoring = str(ds.scoring.values[-1])  # margin where computed (the scoring LASER reports)
        v = results.view(ds, "retrieval_crossmodal")
        score = v.score.sel(scoring=scoring)
        for group in ("all",) + LEVELS:
            langs = ds.lang.values if group == "all" else ds.lang.values[ds.level.values == group]
            if len(langs) == 0:
                continue
            sub = score.sel(lang=langs)
            mean = sub.mean("lang", skipna=True)
            draws = stats.language_indices(len(langs), count, seed, f"fig7/{model}/{group}")
            ci = stats.interval(stats.resampled_means(sub.transpose("pair", "lang").values, False, draws))
            ax.plot(ds.pair_depth.values, mean.values, marker="o", ms=3, color=COLORS[group],
                    lw=2 if group == "all" else 1, label=f"speech -> own text, {group}")
            _band(ax, ds.pair_depth.values, ci[:, 0], ci[:, 1], COLORS[group])
            frames.append(pd.DataFrame({"model": model, "scoring": scoring, "family": "retrieval_crossmodal",
                                        "group": group, "point": ds.pair.values, "depth": ds.pair_depth.values,
                                        "mean": mean.values, "languages_low": ci[:, 0],
                                        "languages_high": ci[:, 1]}))
        chance = float(np.nanmean(v.chance.sel(scoring=scoring).values))
        ax.axhline(chance, ls="-.", color="gray", lw=1.2, label=f"chance 1/N (cross-modal) = {chance:.3g}")
        for name, dim, color, label in (("retrieval_text", "text_point", "text", "text -> text, other language"),
                                        ("retrieval_speech", "speech_point", "speech",
                                         "speech -> speech, other language")):
            f = _mean_frame(ds, name, dim)
            f = f[f.scoring == scoring]
            ax.plot(f.depth, f["mean"], marker=".", ms=3, ls=":", color=COLORS[color], label=label)
            _band(ax, f.depth, f["languages_low"], f["languages_high"], COLORS[color])
            frames.append(f.rename(columns={dim: "point"}).assign(model=model, group="all"))
        ax.axhline(float(np.nanmean(results.view(ds, "retrieval_text").chance.values)), ls="-.", color="darkgray",
                   lw=0.8, label="chance 1/M (cross-lingual)")
        _ticks(ax, ds.pair_depth.values, ds.pair.values)
        ax.set(title=f"{model}: top-1 retrieval ({scoring})", xlabel="point",
               ylabel="accuracy (95 % interval: languages)", ylim=(-0.02, 1.02))
        ax.legend(fontsize=6)
    _save(fig, out, "fig7_retrieval", pd.concat(frames))
    return "fig7_retrieval"


def fig8(datasets: dict, out: Path) -> str | None:
    """Speech of lang_a retrieving the text of lang_b at the last cross-modal pair (the diagonal: its own
    transcripts, from the cross-modal readout on its N ids)."""
    have = {m: ds for m, ds in datasets.items() if "retrieval_speech_text" in ds}
    if not have:
        return None
    fig, axes = _axes(len(have), width=5.2, height=4.6)
    frames = []
    for ax, (model, ds) in zip(axes, have.items()):
        scoring = str(ds.scoring.values[-1])
        pair = str(ds.pair.values[-1])
        m = ds.retrieval_speech_text.sel(scoring=scoring, pair=pair).values.copy()
        np.fill_diagonal(m, ds.retrieval_crossmodal.sel(scoring=scoring, pair=pair).values)
        im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
        langs = list(ds.lang.values)
        ax.set_xticks(range(len(langs)))
        ax.set_xticklabels(langs, rotation=90, fontsize=5)
        ax.set_yticks(range(len(langs)))
        ax.set_yticklabels(langs, fontsize=5)
        ax.set(title=f"{model}: speech -> text at {pair} ({scoring})", ylabel="speech of", xlabel="text of")
        fig.colorbar(im, ax=ax, label="top-1 accuracy")
        frames.append(pd.DataFrame(m, index=pd.Index(langs, name="speech"), columns=langs).reset_index()
                      .melt(id_vars="speech", var_name="text", value_name="accuracy").assign(model=model, pair=pair,
                                                                                             scoring=scoring))
    _save(fig, out, "fig8_retrieval_languages", pd.concat(frames))
    return "fig8_retrieval_languages"


PROBES = (("probe_language_text", "text_point", "text", "language from text"),
          ("probe_language_speech", "speech_point", "speech", "language from speech"),
          ("probe_language_pooled", "pair", "all", "language from text and speech"),
          ("probe_modality", "pair", "medium", "modality (text vs speech)"))


def fig9(datasets: dict, out: Path) -> str | None:
    """Probe accuracy over depth with the sentence-bootstrap interval and the permutation chance levels."""
    have = {m: ds for m, ds in datasets.items() if "probe_modality" in ds}
    if not have:
        return None
    fig, axes = _axes(len(have), height=4.0)
    frames = []
    for ax, (model, ds) in zip(axes, have.items()):
        for name, dim, color, label in PROBES:
            v = results.view(ds, name)
            depth = ds[dim.replace("_point", "_depth").replace("pair", "pair_depth")].values
            ax.plot(depth, v.score.values, marker="o", ms=3, color=COLORS[color], label=label)
            if v.ci is not None:
                _band(ax, depth, v.ci.isel(bound=0).values, v.ci.isel(bound=1).values, COLORS[color])
            ax.plot(depth, v.chance.values, ls="-.", lw=0.8, color=COLORS[color])
            frames.append(pd.DataFrame({"model": model, "probe": name, "point": ds[dim].values, "depth": depth,
                                        "accuracy": v.score.values, "chance": v.chance.values, "p": v.p.values,
                                        **({"low": v.ci.isel(bound=0).values, "high": v.ci.isel(bound=1).values}
                                           if v.ci is not None else {})}))
        _ticks(ax, ds.pair_depth.values, ds.pair.values)
        ax.set(title=f"{model}: linear probes", xlabel="point",
               ylabel="held-out accuracy (95 % interval: sentences)\ndash-dot: permutation chance", ylim=(-0.02, 1.02))
        ax.legend(fontsize=6)
    _save(fig, out, "fig9_probes", pd.concat(frames))
    return "fig9_probes"


def draw(datasets: dict, out: Path, count: int, seed: int) -> list[str]:
    return [name for name in (fig7(datasets, out, count, seed), fig8(datasets, out), fig9(datasets, out)) if name]

