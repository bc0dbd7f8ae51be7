"""The numbers behind each figure, as pandas DataFrames computed from one model's similarity Dataset.

Intervals: `ci_sentences` from the sentence bootstrap, `ci_languages` from the language bootstrap (reduce
stores both for every family mean); per resource level the language bootstrap is redone within the level."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from crossrep import results, stats

from .findings import last_layer_pair, strs

LEVELS = ("high", "medium", "low")


def _ci(ds: xr.Dataset, name: str, source: str, **sel) -> tuple[float, float]:
    ci = getattr(results.view(ds, name), f"ci_{source}")
    if ci is None:
        return np.nan, np.nan
    lo, hi = ci.sel(**sel).values
    return float(lo), float(hi)


def crossmodal_by_level(ds: xr.Dataset, count: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Fig. 2: per pair and group (all + resource levels): mean, intervals, languages, null and baseline."""
    rows = []
    levels = strs(ds.level)
    cm = results.view(ds, "crossmodal")
    for pair, depth in zip(ds.pair.values, ds.pair_depth.values):
        values = cm.score.sel(pair=pair).values
        boot = cm.boot.sel(pair=pair).values if cm.boot is not None else None
        for group in ("all",) + LEVELS:
            keep = np.ones(len(values), bool) if group == "all" else levels == group
            if not keep.any():
                continue
            if group == "all":
                lang_lo, lang_hi = _ci(ds, "crossmodal", "languages", pair=pair)
            else:
                draws = stats.language_indices(int(keep.sum()), count, seed, f"fig2/{group}")
                lang_lo, lang_hi = stats.interval(stats.resampled_means(values[keep], False, draws))
            sent = stats.interval(boot[:, keep].mean(axis=1)) if boot is not None else (np.nan, np.nan)
            rows.append({"pair": str(pair), "depth": float(depth), "group": group,
                         "mean": float(values[keep].mean()), "sentences_low": float(sent[0]),
                         "sentences_high": float(sent[1]), "languages_low": float(lang_lo),
                         "languages_high": float(lang_hi), "languages": int(keep.sum()),
                         "null_mean": float(cm.null_mean.sel(pair=pair).values[keep].mean()),
                         "baseline": float(cm.baseline.sel(pair=pair).mean())})
    return pd.DataFrame(rows)


def upper(matrix: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(matrix.shape[-1], k=1)
    return matrix[..., i, j]


def crosslingual(ds: xr.Dataset) -> pd.DataFrame:
    """Fig. 3: per modality and point, the mean over language pairs, intervals, null and baseline."""
    rows = []
    for modality in ("text", "speech"):
        dim = f"{modality}_point"
        view = results.view(ds, modality)
        for point, depth in zip(ds[dim].values, ds[f"{modality}_depth"].values):
            v = upper(view.score.sel({dim: point}).values)
            s_lo, s_hi = _ci(ds, modality, "sentences", **{dim: point})
            l_lo, l_hi = _ci(ds, modality, "languages", **{dim: point})
            rows.append({"modality": modality, "point": str(point), "depth": float(depth), "mean": float(v.mean()),
                         "std": float(v.std()), "pairs": int(v.size), "sentences_low": s_lo,
                         "sentences_high": s_hi, "languages_low": l_lo, "languages_high": l_hi,
                         "null_mean": float(np.nanmean(upper(view.null_mean.sel({dim: point}).values))),
                         "baseline": float(view.baseline.sel({dim: point}).mean())})
    return pd.DataFrame(rows)


def fig5_pair(ds: xr.Dataset) -> str:
    """The deepest pair of numbered layers (the study's last layer), else the deepest pair."""
    return last_layer_pair(ds) or str(ds.pair.values[int(np.argmax(ds.pair_depth.values))])


def per_language(ds: xr.Dataset, pair: str) -> pd.DataFrame:
    """Fig. 5: per language at one pair: cross-modal score (with its sentence-bootstrap interval) and the
    range over the other languages of cross-lingual text, speech and text-vs-other-speech scores; beside each,
    its chance level as the findings use it, the permutation null mean (`<family>_null_mean`): of the
    cross-modal score (`crossmodal_chance`), and the mean over the language's pairs of the cross-lingual ones
    (`text_chance`, `speech_chance`, `text_speech_chance`)."""
    t_point, s_point = str(ds.pair_text_point.sel(pair=pair).values), str(ds.pair_speech_point.sel(pair=pair).values)
    text = ds.text.sel(text_point=t_point).values
    speech = ds.speech.sel(speech_point=s_point).values
    ts = ds.text_speech.sel(pair=pair).values
    view = {name: results.view(ds, name) for name in ("crossmodal", "text", "speech", "text_speech")}
    cm = view["crossmodal"].score.sel(pair=pair).values
    boot = view["crossmodal"].boot
    boot = stats.interval(boot.sel(pair=pair).values) if boot is not None else None
    cm_null = view["crossmodal"].null_mean.sel(pair=pair).values
    nulls = {"text": view["text"].null_mean.sel(text_point=t_point).values,
             "speech": view["speech"].null_mean.sel(speech_point=s_point).values,
             "text_speech": view["text_speech"].null_mean.sel(pair=pair).values}
    rows = []
    for i, lang in enumerate(ds.lang.values):
        others = [j for j in range(len(ds.lang)) if j != i]
        rows.append({"lang": str(lang), "level": str(ds.level.values[i]), "crossmodal": float(cm[i]),
                     "crossmodal_low": float(boot[i, 0]) if boot is not None else np.nan,
                     "crossmodal_high": float(boot[i, 1]) if boot is not None else np.nan,
                     "text_min": float(text[i, others].min()), "text_max": float(text[i, others].max()),
                     "speech_min": float(speech[i, others].min()), "speech_max": float(speech[i, others].max()),
                     "text_speech_min": float(ts[i, others].min()), "text_speech_max": float(ts[i, others].max()),
                     "crossmodal_chance": float(cm_null[i]),
                     **{f"{key}_chance": float(np.nanmean(null[i, others])) for key, null in nulls.items()}})
    return pd.DataFrame(rows)
