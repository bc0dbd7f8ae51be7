"""SVCCA as the study computed it with google/svcca, in a form that scores many pairs cheaply.

google/svcca's recipe, for activations of n sentences: centre each feature, SVD, keep the top k directions
that explain `variance` of the total, then CCA (`cca_core.get_cca_similarity`: covariances rescaled by their
largest entry, directions whose rescaled variance is below `epsilon` dropped, `epsilon` added to the diagonal,
whitened cross-covariance, SVD); the score is the mean of all min(kx, ky) canonical correlations.

After the SVD step the kept directions are uncorrelated, so the CCA reduces exactly to the singular values of
Bx^T By, where B holds the kept left singular vectors (n x k), each scaled by r / sqrt(r^2 + epsilon) with r
the singular value relative to the largest. One basis per representation serves every pair it is in
(`prepare`, then `pair_scores`). Where a basis fills more than half of the sentence space, a pair can instead
go through the basis' orthogonal complement, which is exact for the unscaled bases and within
COMPLEMENT_TOLERANCE of the scaled ones (see `route`).

`variance_mode` says what "explains `variance`" sums: "singular" (the singular values, as google/svcca's own
`sum_threshold` does; the default) or "squared" (their squares, the variance proper). k is the smallest count
whose cumulative share reaches `variance`. A representation with no variance at all scores 0, as in
google/svcca. Everything is computed in float64; arrays may be NumPy or CuPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
    vectors, scale, s, _ = _svd_step(x, variance, epsilon, mode, complement=False)
    return vectors * scale, s


@dataclass(frozen=True)
class Basis:
    """One representation prepared for `pair_scores`: its kept left singular vectors (orthonormal, n x k),
    their epsilon scales r / sqrt(r^2 + epsilon), `slack` = 1 - the smallest scale, and, where the kept
    directions fill more than half of the sentence space, an orthonormal basis of the rest (n x (n - k))."""

    vectors: Any
    scale: Any
    slack: float
    complement: Any = None

    @property
    def width(self) -> int:
        return self.vectors.shape[1]


def prepare(x, variance: float = 0.9, epsilon: float = 1e-10, mode: str = "singular") -> Basis:
    """`x` (n sentences x d features) reduced once for every pair it is in."""
    vectors, scale, _, rest = _svd_step(x, variance, epsilon, mode, complement=True)
    slack = 1.0 - float(scale[-1]) if len(scale) else 0.0
    return Basis(vectors, scale, slack, rest)


def _svd_step(x, variance, epsilon, mode, complement):
    """Centre, SVD, keep the directions that explain `variance`: (vectors, scales, singular values, the
    orthonormal complement of the kept vectors or None; it is only made where it is narrower than they are)."""
    if mode not in MODES:
        raise ValueError(f"variance_mode must be one of {MODES}, got {mode!r}")
    xp = array_module(x)
    x = xp.asarray(x, dtype=xp.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"expected a (sentences x features) array with at least 2 sentences, got {x.shape}")
    if not bool(xp.isfinite(x).all()):
        raise ValueError("activations contain NaN or infinity")
    n = x.shape[0]
    x = x - x.mean(axis=0, keepdims=True)
    u, s = _left_singular(x, xp)
    if float(s[0]) == 0.0:
        return u[:, :0], s[:0], s[:0], None
    energy = s if mode == "singular" else s * s
    share = xp.cumsum(energy) / energy.sum()
    k = min(int(xp.argmax(share >= variance)) + 1 if bool((share >= variance).any()) else len(s), len(s))
    r = s[:k] / s[0]
    k = int((r * r >= epsilon).sum())  # r descends, so the kept directions are a prefix
    r = r[:k]
    rest = None
    if complement and n - k < k:
        rest = u[:, k:] if u.shape[1] == n else xp.linalg.qr(u[:, :k], mode="complete")[0][:, k:]
        rest = xp.ascontiguousarray(rest)
    return xp.ascontiguousarray(u[:, :k]), r / xp.sqrt(r * r + epsilon), s[:k], rest


def _left_singular(x, xp):
    """Left singular vectors and singular values, descending. With more features than sentences, from the
    eigen-decomposition of the (sentences x sentences) Gram matrix: a quarter of the work of the SVD, and
    all n vectors."""
    n, d = x.shape
    if d <= n:
        u, s, _ = xp.linalg.svd(x, full_matrices=False)
        return u, s
    w, v = xp.linalg.eigh(x @ x.T)
    w, v = w[::-1], v[:, ::-1]
    return v, xp.sqrt(xp.clip(w, 0.0, None))


def _small_gram_eigenvalues(blocks, xp):
    """Eigenvalues of the smaller Gram matrix (B B^T or B^T B) of each matrix in a stack."""
    if blocks.shape[1] > blocks.shape[2]:
        blocks = blocks.transpose(0, 2, 1)
    return xp.linalg.eigvalsh(blocks @ blocks.transpose(0, 2, 1))


def _nuclear(blocks, xp):
    """Sum of singular values of each matrix in a stack."""
    return xp.sqrt(xp.clip(_small_gram_eigenvalues(blocks, xp), 0.0, None)).sum(axis=-1)


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


COMPLEMENT_TOLERANCE = 1e-8


def route(x: Basis, y: Basis) -> tuple[bool, Basis, Basis]:
    """How `pair_scores` scores a pair: (through the complement?, x, y) with x the wider basis.

    The canonical correlations of x and y are the cosines of the principal angles between the two kept
    subspaces; their squares are 1 - the eigenvalues of S^T S, S = C^T Uy with C the complement of x (n - kx
    columns instead of kx, so where kx > n / 2 both the product and the eigen-solve shrink, the latter
    cubically). That identity holds for orthonormal bases; the epsilon scales shrink each correlation by a
    factor in [(1 - slack_x)(1 - slack_y), 1], so the complement is taken only where that bounds the error of
    the score by COMPLEMENT_TOLERANCE (directions of at least about a tenth of the top singular value)."""
    if x.width < y.width:
        x, y = y, x
    bound = 1.0 - (1.0 - x.slack) * (1.0 - y.slack)
    return x.complement is not None and bound <= COMPLEMENT_TOLERANCE, x, y


def pair_scores(bases_a: list[Basis], bases_b: list[Basis] | None = None,
                pairs: list[tuple[int, int]] | None = None, batch: int = 128) -> np.ndarray:
    """SVCCA for many pairs of `prepare`d representations at once.

    Without `bases_b`: the symmetric matrix over `bases_a` (diagonal NaN); with it: every (i, j), or only
    `pairs`. Pairs are batched in order of their widths, and each batch is a stack of zero-padded blocks
    (padding adds only zero singular values) and a batched
    symmetric eigen-solve of each block's smaller Gram matrix (several times faster than SVDs of small
    matrices; singular values near 0 carry an error of about 1e-8). A pair goes directly (the singular values of
    Bx^T By, B the scaled bases) or through the complement of its wider side (see `route`).
    """
    symmetric = bases_b is None
    bases_b = bases_a if symmetric else bases_b
    if pairs is None:
        pairs = ([(i, j) for i in range(len(bases_a)) for j in range(i + 1, len(bases_a))] if symmetric
                 else [(i, j) for i in range(len(bases_a)) for j in range(len(bases_b))])
    out = np.full((len(bases_a), len(bases_b)), np.nan)
    direct, through = [], []
    for i, j in pairs:
        if bases_a[i].width == 0 or bases_b[j].width == 0:
            out[i, j] = 0.0
            continue
        complement, x, y = route(bases_a[i], bases_b[j])
        (through if complement else direct).append((i, j, x, y))
    for group, score_batch in ((direct, _direct_sums), (through, _complement_sums)):
        group.sort(key=lambda c: (c[2].width, c[3].width))  # a batch is padded to its widest: batch alike widths
        for start in range(0, len(group), batch):
            chunk = group[start:start + batch]
            sums = score_batch([x for _, _, x, _ in chunk], [y for _, _, _, y in chunk])
            for (i, j, _, y), total in zip(chunk, sums):
                out[i, j] = total / y.width
    if symmetric:
        upper = np.triu_indices(len(bases_a), 1)
        out[upper[1], upper[0]] = out[upper]
    return out


def _direct_sums(xs: list[Basis], ys: list[Basis]) -> np.ndarray:
    """Sum of the singular values of each Bx^T By."""
    xp = array_module(xs[0].vectors)
    blocks = _stack([(b.vectors, b.scale) for b in xs], xp).transpose(0, 2, 1) @ _stack(
        [(b.vectors, b.scale) for b in ys], xp)
    return _to_numpy(_nuclear(blocks, xp))


def _complement_sums(xs: list[Basis], ys: list[Basis]) -> np.ndarray:
    """Sum over y's directions of sqrt(1 - mu), mu the eigenvalues of S^T S (zero beyond S's rank), written
    ky - sum mu / (1 + sqrt(1 - mu)) so that padding (mu = 0) adds nothing and no cancellation occurs."""
    xp = array_module(xs[0].vectors)
    if max(b.complement.shape[1] for b in xs) == 0:
        return np.array([float(b.width) for b in ys])
    blocks = _stack([(b.complement, None) for b in xs], xp).transpose(0, 2, 1) @ _stack(
        [(b.vectors, None) for b in ys], xp)
    mu = xp.clip(_small_gram_eigenvalues(blocks, xp), 0.0, 1.0)
    lost = _to_numpy((mu / (1.0 + xp.sqrt(1.0 - mu))).sum(axis=-1))
    return np.array([float(b.width) for b in ys]) - lost


def _stack(parts: list, xp):
    """(count, n, widest) stack of matrices, each times its column scales (None: as it is), zero-padded."""
    width = max(v.shape[1] for v, _ in parts)
    stack = xp.empty((len(parts), parts[0][0].shape[0], width), dtype=xp.float64)
    for i, (v, scale) in enumerate(parts):
        k = v.shape[1]
        if scale is None:
            stack[i, :, :k] = v
        else:
            xp.multiply(v, scale, out=stack[i, :, :k])
        stack[i, :, k:] = 0.0
    return stack


def _to_numpy(a) -> np.ndarray:
    return a.get() if not isinstance(a, np.ndarray) else a


def svcca_matrix(xs: list, ys: list | None = None, variance: float = 0.9, epsilon: float = 1e-10,
                 mode: str = "singular") -> np.ndarray:
    """All pairs: `xs` against itself (symmetric, diagonal NaN) or against `ys` (every (i, j))."""
    bx = [prepare(x, variance, epsilon, mode) for x in xs]
    by = None if ys is None else [prepare(y, variance, epsilon, mode) for y in ys]
    return pair_scores(bx, by)
