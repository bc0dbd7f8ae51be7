"""Resampling statistics shared by the reduction and the findings: seeded replicates, percentile intervals, the
language bootstrap of means over language cells, and the tests the findings use. NumPy only, float64.

Languages, not language pairs, are the units: a pair matrix shares each language with every other pair, so
resampling or permuting pairs would treat dependent values as independent.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as _t


def rng(*key) -> np.random.Generator:
    """A generator seeded by a readable key (e.g. (seed, "null", "text", k)): the same key, the same draws."""
    return np.random.default_rng(zlib.crc32("/".join(map(str, key)).encode()))


def permutation(seed: int, name: str, n: int, k: int, *cell) -> np.ndarray:
    """The k-th sentence order of the permutation null of `name` (and `cell`, e.g. a pair's indices) over n
    sentences."""
    return rng(seed, "null", name, n, k, *cell).permutation(n)


def resample(seed: int, n: int, b: int) -> np.ndarray:
    """The b-th sentence bootstrap resample of n positions: the same for every representation of n sentences."""
    return rng(seed, "bootstrap", n, b).integers(0, n, n)


def jackknife_kept(seed: int, n: int, groups: int, g: int) -> np.ndarray:
    """The sentence positions (ascending) kept by the g-th replicate of the delete-a-group jackknife: positions
    are dealt into `groups` groups of (nearly) equal size in a seeded order, the same for every representation of
    n sentences, and replicate g leaves group g out. Unlike a bootstrap resample it repeats no sentence: a
    repeated sentence is a cluster that both sides of a comparison share, which raises CCA and Gram-based scores
    and their spread."""
    label = np.empty(n, dtype=int)
    label[rng(seed, "jackknife", n, groups).permutation(n)] = np.arange(n) % groups
    return np.flatnonzero(label != g)


def recording_rows(stored: np.ndarray, ids, seed: int, lang: str, s: int) -> np.ndarray:
    """The rows of the s-th speaker redraw of `ids` in a shard whose rows hold `stored` keys (ascending, a key
    repeated per recording): for each key one of its recordings, uniformly, drawn for every stored key of the
    language at once, so a key gets the same recording in every family, point and measure of the redraw.
    Draws are independent across languages (each language has its own readers)."""
    keys, first, counts = np.unique(stored, return_index=True, return_counts=True)
    u = rng(seed, "speakers", lang, s).random(len(keys))
    at = np.searchsorted(keys, ids)
    return (first + np.floor(u * counts).astype(np.int64))[at]


def interval(samples, level: float = 0.95, axis: int = 0) -> np.ndarray:
    """Percentile interval (low, high) along `axis`, NaN-aware; last axis of the result is (low, high)."""
    a = (1.0 - level) / 2.0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(np.asarray(samples, dtype=np.float64), [a, 1.0 - a], axis=axis)
    return np.stack([lo, hi], axis=-1)


def language_indices(n_languages: int, count: int, seed: int, name: str) -> np.ndarray:
    """`count` resamples (with replacement) of n language indices, (count, n)."""
    return rng(seed, "languages", name, n_languages).integers(0, n_languages, (count, n_languages))


def resampled_means(values: np.ndarray, pair_axes: bool, draws: np.ndarray) -> np.ndarray:
    """Means over language cells for each language resample. `values` (..., L) for per-language values or
    (..., L, L) for pair matrices (NaN on the diagonal: a language drawn twice adds no pair with itself).
    Returns (count, ...)."""
    v = np.asarray(values, dtype=np.float64)
    out = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample of one language has no pair: NaN
        for idx in draws:
            if pair_axes:
                sub = v[..., idx, :][..., idx]
                same = idx[:, None] == idx[None, :]
                sub = np.where(same, np.nan, sub)
                out.append(np.nanmean(sub, axis=(-2, -1)))
            else:
                out.append(np.nanmean(v[..., idx], axis=-1))
    return np.stack(out)


TIE = 1e-12  # a null score this close below the observed one ties with it (float64 rounding: about 1e-16)


def add_one_p(null: np.ndarray, observed: np.ndarray | float, axis: int = 0) -> np.ndarray:
    """(1 + #{null >= observed}) / (K + 1): a permutation p-value that is never 0 (Phipson and Smyth 2010). A
    null score equal to the observed one but for rounding counts (a discrete measure such as mknn ties
    exactly, and NumPy and CuPy round differently)."""
    null = np.asarray(null, dtype=np.float64)
    k = null.shape[axis]
    with np.errstate(invalid="ignore"):
        hits = (null >= np.expand_dims(observed, axis) - TIE).sum(axis=axis)
    return (1.0 + hits) / (k + 1.0)


@dataclass(frozen=True)
class Component:
    """One source of variation of an estimate: its variance and the degrees of freedom it is estimated with."""

    source: str
    variance: float
    df: float


@dataclass(frozen=True)
class TTest:
    """An estimate with its standard error from independent variance components, and Satterthwaite's degrees
    of freedom; the p-value and every interval come from the same t reference, so they cannot disagree."""

    estimate: float
    se: float
    df: float
    components: tuple[Component, ...]

    @property
    def p(self) -> float:
        """Two-sided p for estimate = 0."""
        if not (np.isfinite(self.estimate) and np.isfinite(self.se) and self.se > 0 and self.df > 0):
            return float("nan")
        return float(2.0 * _t.sf(abs(self.estimate) / self.se, self.df))

    def interval(self, alpha: float) -> tuple[float, float]:
        """The two-sided (1 - alpha) interval: exactly the effects a two-sided test at alpha does not reject."""
        if not (np.isfinite(self.se) and self.df > 0):
            return float("nan"), float("nan")
        half = float(_t.ppf(1.0 - alpha / 2.0, self.df)) * self.se
        return self.estimate - half, self.estimate + half


def jackknife(statistic, n: int, strata: np.ndarray | None = None) -> list[Component]:
    """Delete-one jackknife over n units (languages) of statistic(kept indices), one component per stratum:
    (n_g - 1) / n_g * sum over the stratum's units of (theta_(-i) - their mean)^2, with n_g - 1 degrees of
    freedom. Within strata (resource levels compared) it is the stratified jackknife: for a difference of group
    means it is exactly Welch's variance. It respects that a unit enters every pair it is in: a language's
    deletion removes all its pairs."""
    labels = np.zeros(n, dtype=int) if strata is None else np.asarray(strata)
    everyone = np.arange(n)
    out = []
    for label in dict.fromkeys(labels.tolist()):
        members = np.flatnonzero(labels == label)
        k = members.size
        if k < 2:
            continue
        values = np.array([statistic(everyone[everyone != i]) for i in members], dtype=np.float64)
        out.append(Component(f"languages ({label})" if strata is not None else "languages",
                             float((k - 1) / k * ((values - values.mean()) ** 2).sum()), float(k - 1)))
    return out


def group_component(replicates, source: str = "sentences") -> Component | None:
    """The delete-a-group jackknife variance of an estimate from its G replicates (each leaving one sentence group
    out of every comparison), (G - 1) / G * sum (theta_g - mean)^2 with G - 1 degrees of freedom; None below 2."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size < 2:
        return None
    return Component(source, float((r.size - 1) / r.size * ((r - r.mean()) ** 2).sum()), float(r.size - 1))


def t_test(estimate: float, components: list[Component]) -> TTest:
    """The estimate's standard error from the sum of independent components and Welch-Satterthwaite degrees of
    freedom, (sum v)^2 / sum(v^2 / df)."""
    comps = tuple(c for c in components if c is not None)
    total = sum(c.variance for c in comps)
    denom = sum(c.variance ** 2 / c.df for c in comps if c.df > 0)
    df = total ** 2 / denom if denom > 0 else float("nan")
    return TTest(float(estimate), float(np.sqrt(total)) if comps else float("nan"), float(df), comps)


def holm(p_values, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down over the finite p-values: (adjusted p, per-test level). The level is the one each test is
    compared with (alpha / (m - rank + 1) up to the first test not rejected, then that test's level for all the
    rest), so an interval at confidence 1 - level excludes 0 exactly when the adjusted p is below alpha (a
    step-down-compatible interval). Controls the family-wise error rate under any dependence between tests.
    NaN where p is NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted, level = np.full(p.shape, np.nan), np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    if m == 0:
        return adjusted, level
    order = idx[np.argsort(p[idx], kind="stable")]
    thresholds = alpha / (m - np.arange(m))
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    failed = np.flatnonzero(p[order] >= thresholds)
    stop = failed[0] if failed.size else m
    level[order] = np.where(np.arange(m) < stop, thresholds, thresholds[min(stop, m - 1)])
    return adjusted, level
