"""Resampling statistics shared by the reduction and the findings: seeded replicates, percentile intervals, the
language bootstrap of means over language cells, and the tests the findings use. NumPy only, float64.

Languages, not language pairs, are the units: a pair matrix shares each language with every other pair, so
resampling or permuting pairs would treat dependent values as independent.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np


def rng(*key) -> np.random.Generator:
    """A generator seeded by a readable key (e.g. (seed, "null", "text", k)): the same key, the same draws."""
    return np.random.default_rng(zlib.crc32("/".join(map(str, key)).encode()))


def permutation(seed: int, name: str, n: int, k: int) -> np.ndarray:
    """The k-th sentence order of the permutation null of `name` over n sentences."""
    return rng(seed, "null", name, n, k).permutation(n)


def resample(seed: int, n: int, b: int) -> np.ndarray:
    """The b-th sentence bootstrap resample of n positions: the same for every representation of n sentences."""
    return rng(seed, "bootstrap", n, b).integers(0, n, n)


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


def add_one_p(null: np.ndarray, observed: np.ndarray | float, axis: int = 0) -> np.ndarray:
    """(1 + #{null >= observed}) / (K + 1): a permutation p-value that is never 0 (Phipson and Smyth 2010)."""
    null = np.asarray(null, dtype=np.float64)
    k = null.shape[axis]
    with np.errstate(invalid="ignore"):
        hits = (null >= np.expand_dims(observed, axis)).sum(axis=axis)
    return (1.0 + hits) / (k + 1.0)


def sign_flip_p(values: np.ndarray, count: int, seed: int, name: str) -> float:
    """One-sided p for mean(values) > 0 with independent units (languages) whose sign is flipped at random:
    exact under a null symmetric about 0, add-one."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    signs = rng(seed, "signflip", name, v.size).choice([-1.0, 1.0], size=(count, v.size))
    return float(add_one_p((signs * v).mean(axis=1), v.mean()))


def label_permutation_p(values: np.ndarray, labels: np.ndarray, statistic, count: int, seed: int,
                        name: str) -> float:
    """One-sided p for statistic(values, labels) large, permuting the labels over the units, add-one."""
    observed = statistic(values, labels)
    g = rng(seed, "labels", name, len(labels))
    null = np.array([statistic(values, g.permutation(labels)) for _ in range(count)])
    return float(add_one_p(null, observed))


def bootstrap_shift_p(replicates: np.ndarray, observed: float) -> float:
    """One-sided p for a statistic > 0 from its bootstrap replicates, centred on the observed value (the
    replicates minus the estimate stand for the null distribution around 0; Hall and Wilson 1991), add-one."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0 or not np.isfinite(observed):
        return float("nan")
    return float(add_one_p(r - observed, observed))
