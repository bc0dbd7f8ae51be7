"""SVCCA as the study computed it with google/svcca, in a form that scores many pairs cheaply.

google/svcca's recipe, for activations of n sentences: centre each feature, SVD, keep the top k directions
that explain `variance` of the total, then CCA (`cca_core.get_cca_similarity`: covariances rescaled by their
largest entry, directions whose rescaled variance is below `epsilon` dropped, `epsilon` added to the diagonal,
whitened cross-covariance, SVD); the score is the mean of all min(kx, ky) canonical correlations.

After the SVD step the kept directions are uncorrelated, so the CCA reduces exactly to the singular values of
Bx^T By, where B holds the kept left singular vectors (n x k), each scaled by r / sqrt(r^2 + epsilon) with r
the singular value relative to the largest. One basis per representation serves every pair it is in.

`variance_mode` says what "explains `variance`" sums: "singular" (the singular values, as google/svcca's own
`sum_threshold` does; the default) or "squared" (their squares, the variance proper). k is the smallest count
whose cumulative share reaches `variance`. A representation with no variance at all scores 0, as in
google/svcca. Everything is computed in float64; arrays may be NumPy or CuPy.
"""

from __future__ import annotations

import numpy as np

MODES = ("singular", "squared")


def array_module(a):
    """numpy, or cupy for a CuPy array."""
    if type(a).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def reduced_basis(x, variance: float = 0.9, epsilon: float = 1e-10, mode: str = "singular"):
    """The scaled orthonormal basis (n x k) that stands for `x` (n sentences x d features) in SVCCA."""
    return reduce_svd(x, variance, epsilon, mode)[0]


def reduce_svd(x, variance: float = 0.9, epsilon: float = 1e-10, mode: str = "singular"):
    """SVCCA's SVD step: the scaled basis (n x k) and the k kept singular values of the centred `x`."""
    if mode not in MODES:
        raise ValueError(f"variance_mode must be one of {MODES}, got {mode!r}")
    xp = array_module(x)
    x = xp.asarray(x, dtype=xp.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"expected a (sentences x features) array with at least 2 sentences, got {x.shape}")
    if not bool(xp.isfinite(x).all()):
        raise ValueError("activations contain NaN or infinity")
    x = x - x.mean(axis=0, keepdims=True)
    u, s = _left_singular(x, xp)
    if float(s[0]) == 0.0:
        return u[:, :0], s[:0]
    energy = s if mode == "singular" else s * s
    share = xp.cumsum(energy) / energy.sum()
    k = min(int(xp.argmax(share >= variance)) + 1 if bool((share >= variance).any()) else len(s), len(s))
    r = s[:k] / s[0]
    keep = r * r >= epsilon
    r = r[keep]
    return u[:, :k][:, keep] * (r / xp.sqrt(r * r + epsilon)), s[:k][keep]


def _left_singular(x, xp):
    """Left singular vectors and singular values, descending. With more features than sentences, from the
    eigen-decomposition of the (sentences x sentences) Gram matrix: a quarter of the work of the SVD."""
    n, d = x.shape
    if d <= n:
        u, s, _ = xp.linalg.svd(x, full_matrices=False)
        return u, s
    w, v = xp.linalg.eigh(x @ x.T)
    w, v = w[::-1], v[:, ::-1]
    return v, xp.sqrt(xp.clip(w, 0.0, None))


def _nuclear(blocks, xp):
    """Sum of singular values of each matrix in a stack, from the eigenvalues of its smaller Gram matrix."""
    if blocks.shape[1] > blocks.shape[2]:
        blocks = blocks.transpose(0, 2, 1)
    gram = blocks @ blocks.transpose(0, 2, 1)
    return xp.sqrt(xp.clip(xp.linalg.eigvalsh(gram), 0.0, None)).sum(axis=-1)


def score(bx, by) -> float:
    """Mean canonical correlation of two bases from `reduced_basis`."""
    if bx.shape[1] == 0 or by.shape[1] == 0:
        return 0.0
    xp = array_module(bx)
    return float(_nuclear((bx.T @ by)[None], xp)[0] / min(bx.shape[1], by.shape[1]))


def svcca(x, y, variance: float = 0.9, epsilon: float = 1e-10, mode: str = "singular") -> float:
    """SVCCA similarity of two (sentences x features) arrays with the same sentences in the same order."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"SVCCA needs the same sentences on both sides: {x.shape[0]} vs {y.shape[0]} rows")
    return score(reduced_basis(x, variance, epsilon, mode), reduced_basis(y, variance, epsilon, mode))


def pair_scores(bases_a: list, bases_b: list | None = None, pairs: list[tuple[int, int]] | None = None,
                batch: int = 128) -> np.ndarray:
    """SVCCA for many pairs of bases at once: batched products of zero-padded bases, batched eigen-solves.

    Without `bases_b`: the symmetric matrix over `bases_a` (diagonal NaN); with it: every (i, j), or only
    `pairs`. Bases are zero-padded to a common width, which adds only zero singular values, so the sum of
    singular values over min(kx, ky) is the exact mean canonical correlation. The sums come from the
    eigenvalues of each block's Gram matrix (a batched matrix product and a symmetric eigen-solver, several
    times faster than SVDs of small matrices; singular values near 0 carry an error of about 1e-8).
    """
    xp = array_module(bases_a[0])
    symmetric = bases_b is None
    bases_b = bases_a if symmetric else bases_b
    if pairs is None:
        pairs = ([(i, j) for i in range(len(bases_a)) for j in range(i + 1, len(bases_a))] if symmetric
                 else [(i, j) for i in range(len(bases_a)) for j in range(len(bases_b))])
    ka = [b.shape[1] for b in bases_a]
    kb = [b.shape[1] for b in bases_b]
    out = np.full((len(bases_a), len(bases_b)), np.nan)
    live = [(i, j) for i, j in pairs if ka[i] and kb[j]]
    for i, j in pairs:
        if not (ka[i] and kb[j]):
            out[i, j] = 0.0
    if live:
        a = _padded(bases_a, xp)
        b = a if symmetric else _padded(bases_b, xp)
        for start in range(0, len(live), batch):
            chunk = live[start:start + batch]
            rows = xp.asarray([i for i, _ in chunk])
            cols = xp.asarray([j for _, j in chunk])
            sums = _nuclear(a[rows].transpose(0, 2, 1) @ b[cols], xp)
            sums = sums.get() if xp is not np else sums
            for n, (i, j) in enumerate(chunk):
                out[i, j] = sums[n] / min(ka[i], kb[j])
    if symmetric:
        upper = np.triu_indices(len(bases_a), 1)
        out[upper[1], upper[0]] = out[upper]
    return out


def _padded(bases: list, xp):
    """(count, n, k_max) stack of bases, zero beyond each basis' own width."""
    width = max(b.shape[1] for b in bases)
    stack = xp.zeros((len(bases), bases[0].shape[0], width), dtype=xp.float64)
    for i, b in enumerate(bases):
        stack[i, :, :b.shape[1]] = b
    return stack


def svcca_matrix(xs: list, ys: list | None = None, variance: float = 0.9, epsilon: float = 1e-10,
                 mode: str = "singular") -> np.ndarray:
    """All pairs: `xs` against itself (symmetric, diagonal NaN) or against `ys` (every (i, j))."""
    bx = [reduced_basis(x, variance, epsilon, mode) for x in xs]
    by = None if ys is None else [reduced_basis(y, variance, epsilon, mode) for y in ys]
    return pair_scores(bx, by)
