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

Each measure is one `Measure` class in the `REGISTRY`: `prepare` a representation once, `permute` a prepared
form to the one of the same sentences in another order (the permutation null, without preparing again: for
SVCCA and PWCCA a row permutation of the activations only permutes the rows of the left singular vectors; for
the Gram-based measures it permutes the Gram matrix's rows and columns), `scores` many pairs at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from . import svcca
from .svcca import Basis, array_module, pair_scores, reduce_svd


class Measure(ABC):
    """One similarity measure: prepare each representation once, then score any number of pairs."""

    name: str

    @abstractmethod
    def prepare(self, x, sim: dict):
        """The prepared form of one (sentences x features) representation; `sim` holds the job's similarity keys."""

    @abstractmethod
    def permute(self, rep, order: np.ndarray):
        """The prepared form of the same representation with its sentences (rows) taken in `order` (NumPy
        indices; moved to the form's array module here)."""

    @abstractmethod
    def sentences(self, rep) -> int:
        """How many sentences (rows) stand behind a prepared form."""

    @abstractmethod
    def scores(self, reps_a: list, reps_b: list, pairs: list[tuple[int, int]]) -> np.ndarray:
        """Scores for `pairs` (i into reps_a, j into reps_b) in a (len(reps_a), len(reps_b)) array, NaN elsewhere."""


REGISTRY: dict[str, Measure] = {}


def register(cls):
    REGISTRY[cls.name] = cls()
    return cls


def get(name: str) -> Measure:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown measure {name!r} (known: {', '.join(REGISTRY)})") from None


@register
class SVCCA(Measure):
    name = "svcca"

    def prepare(self, x, sim):
        return svcca.prepare(x, sim["variance"], sim["epsilon"], sim["variance_mode"])

    def permute(self, rep: Basis, order):
        order = array_module(rep.vectors).asarray(order)
        rest = None if rep.complement is None else rep.complement[order]
        return Basis(rep.vectors[order], rep.scale, rep.slack, rest)

    def sentences(self, rep: Basis) -> int:
        return rep.vectors.shape[0]

    def scores(self, reps_a, reps_b, pairs):
        return pair_scores(reps_a, reps_b, pairs=pairs)


@register
class PWCCA(Measure):
    name = "pwcca"

    def prepare(self, x, sim):
        return reduce_svd(x, sim["variance"], sim["epsilon"], sim["variance_mode"])

    def permute(self, rep, order):
        return rep[0][array_module(rep[0]).asarray(order)], rep[1]

    def sentences(self, rep) -> int:
        return rep[0].shape[0]

    def scores(self, reps_a, reps_b, pairs):
        return pwcca_scores(reps_a, reps_b, pairs)


class GramMeasure(Measure):
    """A measure that is the inner product of two prepared unit vectors, each a flattened n x n matrix."""

    def prepare(self, x, sim):
        xp = array_module(x)
        x = xp.asarray(x, dtype=xp.float64)
        if not bool(xp.isfinite(x).all()):
            raise ValueError("activations contain NaN or infinity")
        return self.matrix(x, sim)

    @abstractmethod
    def matrix(self, x, sim: dict):
        """The flattened unit vector standing for `x` (finite float64)."""

    def permute(self, rep, order):
        n = self.sentences(rep)
        order = array_module(rep).asarray(order)
        return rep.reshape(n, n)[order][:, order].ravel()

    def sentences(self, rep) -> int:
        return int(round(np.sqrt(rep.shape[0])))

    def scores(self, reps_a, reps_b, pairs):
        xp = array_module(reps_a[0])
        rows = sorted({i for i, _ in pairs})
        cols = sorted({j for _, j in pairs})
        out = np.full((len(reps_a), len(reps_b)), np.nan)
        if 2 * len(pairs) < len(rows) * len(cols):  # sparse pairs (a permutation null's): one product each
            prod = xp.stack([reps_a[i] @ reps_b[j] for i, j in pairs])
            prod = prod.get() if xp is not np else prod
            for (i, j), value in zip(pairs, prod):
                out[i, j] = value
            return out
        prod = xp.stack([reps_a[i] for i in rows]) @ xp.stack([reps_b[j] for j in cols]).T
        prod = prod.get() if xp is not np else prod
        r, c = {i: k for k, i in enumerate(rows)}, {j: k for k, j in enumerate(cols)}
        for i, j in pairs:
            out[i, j] = prod[r[i], c[j]]
        return out


def _unit(gram):
    xp = array_module(gram)
    norm = float(xp.linalg.norm(gram))
    return gram.ravel() / norm if norm > 0 else gram.ravel()


@register
class CKA(GramMeasure):
    name = "cka"

    def matrix(self, x, sim):
        x = x - x.mean(axis=0, keepdims=True)
        return _unit(x @ x.T)


@register
class DebiasedCKA(GramMeasure):
    name = "cka_debiased"

    def matrix(self, x, sim):
        x = x - x.mean(axis=0, keepdims=True)
        return _unit(u_centre(x @ x.T))


@register
class MutualKNN(GramMeasure):
    name = "mknn"

    def matrix(self, x, sim):
        xp = array_module(x)
        n = x.shape[0]
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


MEASURES = tuple(REGISTRY)


def prepare(name: str, x, sim: dict):
    """The prepared form of one (sentences x features) representation for measure `name`."""
    return get(name).prepare(x, sim)


def pair_matrix(name: str, reps_a: list, reps_b: list | None, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Scores for `pairs` (NaN elsewhere); `reps_b` None means pairs within `reps_a`."""
    return get(name).scores(reps_a, reps_a if reps_b is None else reps_b, pairs)


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


def pwcca_scores(reps_a: list, reps_b: list, pairs: list[tuple[int, int]], batch: int = 128) -> np.ndarray:
    """PWCCA for `pairs` of (basis, singular values) from `reduce_svd`; batched eigen-solves of M M^T with
    M = Bx^T By, x the side with fewer directions. Padded rows get eigenvalue -1, below every real one."""
    xp = array_module(reps_a[0][0])
    out = np.full((len(reps_a), len(reps_b)), np.nan)
    pairs = sorted(pairs, key=lambda p: sorted((reps_a[p[0]][0].shape[1], reps_b[p[1]][0].shape[1])))
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
