"""The logit lens in the report: from which depth an audio LLM "reads" the transcript's tokens at its audio
positions, against the paired chance level (another sentence's transcript on the same audio).

Per model, metric (recall@10 and the mean best log-probability) and lens point: d_l, the mean over language l's
sentences of (own - chance); the test of mean_l d_l = 0 has the standard error of the retrieval onset test
(analysis.readouts): the delete-one jackknife over languages (languages are the units; each language's own
sentence noise is in it) plus the part of a sentence bootstrap's variance of the mean that languages share (one
draw of sentence ids for every language: the same sentences recur across languages), Welch-Satterthwaite degrees
of freedom. Holm's step-down over the model's points; the onset is the first point in depth order that holds
(adjusted p < alpha and a positive difference); every interval is taken at the level Holm compared it with, so
it excludes 0 exactly when the test rejects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from crossrep import stats

from .figures import _axes, _save, _ticks
from .readouts import above_chance

METRICS = {"recall_10": "transcript recall@10 at audio positions", "logprob": "best log-probability (mean)"}
SENTENCE_BOOTSTRAP = 200


def language_means(ds, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(own, chance) per language and point: means over each language's sentences."""
    return (ds[metric].mean("sentence", skipna=True).transpose("lang", "point").values,
            ds[f"chance_{metric}"].mean("sentence", skipna=True).transpose("lang", "point").values)


def sentence_bootstrap(ds, metric: str, count: int, seed: int) -> np.ndarray:
    """(B, L, P) replicates of each language's mean paired difference, one draw of sentence ids (with replacement,
    from the union of the languages' ids) shared by every language."""
    diff = (ds[metric] - ds[f"chance_{metric}"]).transpose("lang", "sentence", "point").values
    have = np.isfinite(diff)
    draws = stats.rng(seed, "lens", metric).integers(0, diff.shape[1], size=(count, diff.shape[1]))
    out = np.empty((count, diff.shape[0], diff.shape[2]))
    for b, idx in enumerate(draws):
        w = np.bincount(idx, minlength=diff.shape[1]).astype(float)[None, :, None] * have
        out[b] = np.where(w.sum(1) > 0, (np.nan_to_num(diff) * w).sum(1) / np.maximum(w.sum(1), 1e-300), np.nan)
    return out


def onset_tests(ds, model: str, alpha: float, seed: int = 0) -> pd.DataFrame:
    """One row per metric and point: own and chance means over languages, their difference with its interval at
    Holm's level, p and adjusted p, whether it holds, and `onset` on the first point (in depth) that holds."""
    rows = []
    depth = ds.point_depth.values
    for metric in METRICS:
        own, chance = language_means(ds, metric)
        boot = sentence_bootstrap(ds, metric, SENTENCE_BOOTSTRAP, seed)
        tests = [above_chance(own[:, j], chance[:, j], boot[:, :, j]) for j in range(own.shape[1])]
        adjusted, level = stats.holm([t.p for t in tests], alpha)
        onset = None
        for j in np.argsort(depth, kind="stable"):
            t = tests[j]
            low, high = t.interval(level[j]) if np.isfinite(level[j]) else (np.nan, np.nan)
            holds = bool(np.isfinite(adjusted[j]) and adjusted[j] < alpha and t.estimate > 0)
            first = holds and onset is None
            onset = j if first else onset
            rows.append({"model": model, "metric": metric, "point": str(ds.point.values[j]),
                         "depth": float(depth[j]), "own": float(np.nanmean(own[:, j])),
                         "chance": float(np.nanmean(chance[:, j])), "difference": t.estimate, "low": low,
                         "high": high, "confidence": 1 - level[j] if np.isfinite(level[j]) else np.nan,
                         "se": t.se, "df": t.df, "p": t.p, "p_adjusted": float(adjusted[j]), "holds": holds,
                         "onset": first, "text_input": ds.attrs.get("text_input", "joint")})
    return pd.DataFrame(rows)


def draw(tables: dict[str, pd.DataFrame], out: Path) -> str | None:
    """fig10_lens: per model, own and chance transcript recall@10 at the audio positions over depth, the
    difference's Holm-level interval as a band around chance + difference; the onset marked."""
    if not tables:
        return None
    fig, axes = _axes(len(tables), width=4.6)
    frames = []
    for ax, (model, t) in zip(axes, tables.items()):
        t = t[t.metric == "recall_10"].sort_values("depth")
        ax.plot(t.depth, t.own, "o-", color="C0", label="own transcript")
        ax.plot(t.depth, t.chance, "s--", color="0.5", label="another sentence's (chance)")
        ax.fill_between(t.depth, t.chance + t.low, t.chance + t.high, color="C0", alpha=0.2,
                        label="chance + difference, Holm-level interval")
        for _, r in t[t.onset].iterrows():
            ax.axvline(r.depth, color="C3", lw=1, ls=":", label=f"onset: {r.point}")
        ax.set_title(f"{model} (text {t.text_input.iloc[0]})", fontsize=9)
        ax.set_xlabel("decoder point")
        ax.set_ylabel("transcript recall@10 at audio positions")
        _ticks(ax, t.depth, t.point)
        ax.legend(fontsize=6)
        frames.append(t)
    _save(fig, out, "fig10_lens", pd.concat(frames))
    return "fig10_lens"
