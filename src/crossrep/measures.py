"""Similarity measures behind one batched machinery: each representation is prepared once, then any number of
pairs are scored from the prepared forms.

- `svcca`: see crossrep.svcca (SVD to `variance`, then CCA; mean canonical correlation).
- `pwcca`: projection-weighted CCA (Morcos et al. 2018) on the same SVD-reduced representations: the
  canonical correlations rho_i weighted by alpha_i = sum_j |<h_i, z_j>|, h_i the i-th canonical variate and z_j
  the kept principal components (singular value times left singular vector), on the side with fewer kept
  directions (the first on a tie, which keeps the score symmetric). Where kx + ky exceeds the sentence
  count, kx + ky - n correlations are exactly 1 and the L1 weights inside that tied subspace depend on the
  basis LAPACK returns: PWCCA itself is not defined there (google/svcca's code and the paper alike).
- `cka`: linear CKA (Kornblith et al. 2019), <Kx, Ky> / (|Kx| |Ky|) for centred Gram matrices K = X X^T.
- `cka_debiased`: the same with the unbiased HSIC estimator (Song et al. 2012): U-centred Gram matrices,
  zero diagonals; less biased at few sentences, can be slightly negative.
- `mknn`: mutual k-nearest-neighbour alignment (Huh et al. 2024): the mean share of each sentence's k nearest
  neighbours (inner product of L2-normalised vectors, the sentence itself excluded) found in both spaces.

Gram-based measures prepare a unit vector per representation (its flattened, centred Gram matrix or kNN
indicator), so a whole family of pairs is one matrix product.
"""

from __future__ import annotations

import numpy as np

from . import svcca
from .svcca import array_module, pair_scores, reduce_svd

MEASURES = ("svcca", "pwcca", "cka", "cka_debiased", "mknn")


def prepare(name: str, x, sim: dict):
    """The prepared form of one (sentences x features) representation."""
    if name == "svcca":
        return svcca.prepare(x, sim["variance"], sim["epsilon"], sim["variance_mode"])
    if name == "pwcca":
        return reduce_svd(x, sim["variance"], sim["epsilon"], sim["variance_mode"])
    xp = array_module(x)
    x = xp.asarray(x, dtype=xp.float64)
    if not bool(xp.isfinite(x).all()):
        raise ValueError("activations contain NaN or infinity")
    n = x.shape[0]
    if name == "mknn":
        k = int(sim.get("knn", 10))
        if not 1 <= k < n:
            raise ValueError(f"similarity.knn must be between 1 and {n - 1} sentences, got {k}")
        norms = xp.linalg.norm(x, axis=1, keepdims=True)
        z = x / xp.where(norms == 0, 1.0, norms)
        sims = z @ z.T
        sims[xp.arange(n), xp.arange(n)] = -xp.inf
        order = xp.argsort(-sims, axis=1, kind="stable")[:, :k]
        vec = xp.zeros((n, n))
        vec[xp.arange(n)[:, None], order] = 1.0
        return vec.ravel() / np.sqrt(n * k)
    x = x - x.mean(axis=0, keepdims=True)
    gram = x @ x.T
    if name == "cka_debiased":
        gram = u_centre(gram)
    norm = float(xp.linalg.norm(gram))
    return gram.ravel() / norm if norm > 0 else gram.ravel()


def u_centre(gram):
    """U-centring (Szekely and Rizzo 2014): <u(K), u(L)> / (n (n - 3)) is the unbiased HSIC."""
    xp = array_module(gram)
    n = gram.shape[0]
    g = gram.copy()
    g[xp.arange(n), xp.arange(n)] = 0.0
    rows = g.sum(axis=1) / (n - 2)
    total = g.sum() / ((n - 1) * (n - 2))
    g = g - rows[:, None] - rows[None, :] + total
    g[xp.arange(n), xp.arange(n)] = 0.0
    return g


def pair_matrix(name: str, reps_a: list, reps_b: list | None, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Scores for `pairs` (NaN elsewhere); `reps_b` None means pairs within `reps_a`."""
    reps_b = reps_a if reps_b is None else reps_b
    if name == "svcca":
        return pair_scores(reps_a, reps_b, pairs=pairs)
    if name == "pwcca":
        return pwcca_scores(reps_a, reps_b, pairs)
    xp = array_module(reps_a[0])
    rows = sorted({i for i, _ in pairs})
    cols = sorted({j for _, j in pairs})
    prod = xp.stack([reps_a[i] for i in rows]) @ xp.stack([reps_b[j] for j in cols]).T
    prod = prod.get() if xp is not np else prod
    out = np.full((len(reps_a), len(reps_b)), np.nan)
    r, c = {i: k for k, i in enumerate(rows)}, {j: k for k, j in enumerate(cols)}
    for i, j in pairs:
        out[i, j] = prod[r[i], c[j]]
    return out


def pwcca_scores(reps_a: list, reps_b: list, pairs: list[tuple[int, int]], batch: int = 128) -> np.ndarray:
    """PWCCA for `pairs` of (basis, singular values) from `reduce_svd`; batched eigen-solves of M M^T with
    M = Bx^T By, x the side with fewer directions. Padded rows get eigenvalue -1, below every real one."""
    xp = array_module(reps_a[0][0])
    out = np.full((len(reps_a), len(reps_b)), np.nan)
    for start in range(0, len(pairs), batch):
        chunk = []
        for i, j in pairs[start:start + batch]:
            x, y = reps_a[i], reps_b[j]
            if x[0].shape[1] > y[0].shape[1]:
                x, y = y, x
            if x[0].shape[1] == 0:
                out[i, j] = 0.0
            else:
                chunk.append((i, j, x, y))
        if not chunk:
            continue
        kx = max(x[0].shape[1] for *_, x, _ in chunk)
        ky = max(y[0].shape[1] for *_, y in chunk)
        gram = xp.zeros((len(chunk), kx, kx))
        for n, (_, _, (bx, _), (by, _)) in enumerate(chunk):
            m = bx.T @ by
            k = m.shape[0]
            gram[n, :k, :k] = m @ m.T
            gram[n, range(k, kx), range(k, kx)] = -1.0
        lam, vec = xp.linalg.eigh(gram)
        for n, (i, j, (bx, sx), _) in enumerate(chunk):
            k = bx.shape[1]
            rho = xp.sqrt(xp.clip(lam[n, kx - k:], 0.0, None))
            u = vec[n, :k, kx - k:]
            c = xp.linalg.norm(bx, axis=0)
            alpha = (sx * c) @ xp.abs(u) / xp.sqrt((c * c) @ (u * u))
            out[i, j] = float((alpha * rho).sum() / alpha.sum())
    return out


def random_baseline(name: str, n: int, width_a: int, width_b: int, repeats: int, seed: int, sim: dict) -> np.ndarray:
    """The measure on independent standard-normal arrays of the compared sizes, `repeats` times."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(repeats):
        a = prepare(name, rng.standard_normal((n, width_a)), sim)
        b = prepare(name, rng.standard_normal((n, width_b)), sim)
        out.append(pair_matrix(name, [a], [b], [(0, 0)])[0, 0])
    return np.array(out)
