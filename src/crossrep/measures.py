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

Each measure is one `Measure` class, a frozen dataclass whose fields are its parameters (netrep's style:
`get("mknn", knn=5)`), registered by name with `@register`: adding a measure is adding one class. A measure
can `prepare` a representation once, `permute` a prepared form to the one of the same sentences in another
order (the permutation null, without preparing again: for SVCCA and PWCCA a row permutation of the activations
only permutes the rows of the left singular vectors; for the Gram-based measures it permutes the Gram matrix's
rows and columns), and score many pairs at once. What a reduction records of a measure is its `settings()`,
so a changed parameter always makes stored results stale.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar

import numpy as np

from . import svcca
from .errors import ConfigError
from .svcca import Basis, array_module, pair_scores, reduce_svd


@dataclass(frozen=True)
class Measure(ABC):
    """One similarity measure with its parameters (the dataclass fields): prepare each representation once,
    then score any number of pairs."""

    name: ClassVar[str]
    # the transformations of either side that leave the score unchanged, from INVARIANCES (ReSi's taxonomy)
    invariances: ClassVar[tuple[str, ...]]

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Raise ValueError naming the parameter when one is out of range."""

    def params(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def settings(self) -> dict:
        """What results computed with this measure record of it: its name and every parameter."""
        return {"name": self.name, **self.params()}

    @abstractmethod
    def prepare(self, x):
        """The prepared form of one (sentences x features) representation."""

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


    def score(self, x, y) -> float:
        """The measure of one pair of (sentences x features) arrays."""
        return float(self.scores([self.prepare(x)], [self.prepare(y)], [(0, 0)])[0, 0])

    def random_baseline(self, n: int, width_a: int, width_b: int, repeats: int, seed: int) -> np.ndarray:
        """The measure on independent standard-normal arrays of the compared sizes, `repeats` times."""
        rng = np.random.default_rng(seed)
        return np.array([self.score(rng.standard_normal((n, width_a)), rng.standard_normal((n, width_b)))
                         for _ in range(repeats)])


REGISTRY: dict[str, type[Measure]] = {}
INVARIANCES = ("orthogonal", "isotropic scaling", "invertible linear", "translation")


def register(cls: type[Measure]) -> type[Measure]:
    """Class decorator: make a measure known by its `name` (to jobs, `compare` and `--help`)."""
    bad = [i for i in cls.invariances if i not in INVARIANCES]
    if bad:
        raise TypeError(f"measure {cls.name}: unknown invariance {bad[0]!r} (known: {', '.join(INVARIANCES)})")
    REGISTRY[cls.name] = cls
    return cls


def get(name: str, **params) -> Measure:
    """The measure `name` with `params` (its other parameters at their defaults)."""
    cls = REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"unknown measure {name!r} (known: {', '.join(REGISTRY)})")
    known = [f.name for f in fields(cls)]
    unknown = [k for k in params if k not in known]
    if unknown:
        raise ValueError(f"{unknown[0]}: not a parameter of {name} (its parameters: {', '.join(known) or 'none'})")
    return cls(**params)


def resolve(similarity) -> tuple[Measure, ...]:
    """The measure objects of a job's `similarity` section: each spec's own parameters, the others from the
    section's job-wide keys of the same name (`similarity.knn`, `variance`, ...); errors quote the key."""
    out = []
    for spec in similarity.measures:
        cls = REGISTRY.get(spec.name)
        if cls is None:
            raise ConfigError(f"{spec.key}: unknown measure {spec.name!r} (known: {', '.join(REGISTRY)})")
        names = [f.name for f in fields(cls)]
        unknown = [k for k in spec.params if k not in names]
        if unknown:
            raise ConfigError(f"{spec.key}.{unknown[0]}: not a parameter of {spec.name} "
                              f"(its parameters: {', '.join(names) or 'none'})")
        params = {k: getattr(similarity, k) for k in names if hasattr(similarity, k)} | spec.params
        try:
            out.append(cls(**params))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{spec.key}: {exc}") from None
    return tuple(out)


@register
@dataclass(frozen=True)
class SVCCA(Measure):
    invariances = ('orthogonal', 'isotropic scaling', 'translation')
    variance: float = 0.9  # share of the variance the SVD step keeps
    epsilon: float = 1e-10  # google/svcca's regularisation
    variance_mode: str = "singular"  # what the share sums: singular values or their squares

    name = "svcca"

    def check(self):
        _check_svd(self)

    def prepare(self, x):
        return svcca.prepare(x, self.variance, self.epsilon, self.variance_mode)

    def permute(self, rep: Basis, order):
        order = array_module(rep.vectors).asarray(order)
        rest = None if rep.complement is None else rep.complement[order]
        return Basis(rep.vectors[order], rep.scale, rep.slack, rest)

    def sentences(self, rep: Basis) -> int:
        return rep.vectors.shape[0]

    def scores(self, reps_a, reps_b, pairs):
        return pair_scores(reps_a, reps_b, pairs=pairs)


def _check_svd(m) -> None:
    if not 0 < m.variance <= 1:
        raise ValueError(f"variance: expected a share in (0, 1], got {m.variance!r}")
    if not 0 <= m.epsilon <= 1:
        raise ValueError(f"epsilon: expected a number in [0, 1], got {m.epsilon!r}")
    if m.variance_mode not in svcca.MODES:
        raise ValueError(f"variance_mode: expected one of {', '.join(svcca.MODES)}, got {m.variance_mode!r}")


@register
@dataclass(frozen=True)
class PWCCA(Measure):
    invariances = ('orthogonal', 'isotropic scaling', 'translation')
    variance: float = 0.9
    epsilon: float = 1e-10
    variance_mode: str = "singular"

    name = "pwcca"

    def check(self):
        _check_svd(self)

    def prepare(self, x):
        return reduce_svd(x, self.variance, self.epsilon, self.variance_mode)

    def permute(self, rep, order):
        return rep[0][array_module(rep[0]).asarray(order)], rep[1]

    def sentences(self, rep) -> int:
        return rep[0].shape[0]

    def scores(self, reps_a, reps_b, pairs):
        return pwcca_scores(reps_a, reps_b, pairs)


@dataclass(frozen=True)
class GramMeasure(Measure):
    """A measure that is the inner product of two prepared unit vectors, each a flattened n x n matrix."""

    def prepare(self, x):
        return self.matrix(_finite64(x))

    @abstractmethod
    def matrix(self, x):
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


def _finite64(x):
    """`x` as float64 in its array module, refused where it holds NaN or infinity."""
    xp = array_module(x)
    x = xp.asarray(x, dtype=xp.float64)
    if not bool(xp.isfinite(x).all()):
        raise ValueError("activations contain NaN or infinity")
    return x


def unit_rows(x):
    """Each row scaled to unit L2 norm (a zero row stays zero)."""
    xp = array_module(x)
    norms = xp.linalg.norm(x, axis=1, keepdims=True)
    return x / xp.where(norms == 0, 1.0, norms)


def _check_knn(knn) -> None:
    if not isinstance(knn, int) or knn < 1:
        raise ValueError(f"knn: expected a whole number of neighbours >= 1, got {knn!r}")


def _neighbours(sims, knn: int):
    """The n x n 0/1 matrix of each row's `knn` most similar others by `sims` (never itself; ties: lower index)."""
    xp = array_module(sims)
    n = sims.shape[0]
    if knn >= n:
        raise ValueError(f"knn: {knn} neighbours need more than {knn} sentences, got {n}")
    ranked = sims.copy()
    ranked[xp.arange(n), xp.arange(n)] = -xp.inf
    order = xp.argsort(-ranked, axis=1, kind="stable")[:, :knn]
    mask = xp.zeros((n, n))
    mask[xp.arange(n)[:, None], order] = 1.0
    return mask


def _unit(gram):
    xp = array_module(gram)
    norm = float(xp.linalg.norm(gram))
    return gram.ravel() / norm if norm > 0 else gram.ravel()


@register
@dataclass(frozen=True)
class CKA(GramMeasure):
    invariances = ('orthogonal', 'isotropic scaling', 'translation')
    name = "cka"

    def matrix(self, x):
        x = x - x.mean(axis=0, keepdims=True)
        return _unit(x @ x.T)


@register
@dataclass(frozen=True)
class DebiasedCKA(GramMeasure):
    invariances = ('orthogonal', 'isotropic scaling', 'translation')
    name = "cka_debiased"

    def matrix(self, x):
        x = x - x.mean(axis=0, keepdims=True)
        return _unit(u_centre(x @ x.T))


@register
@dataclass(frozen=True)
class MutualKNN(GramMeasure):
    invariances = ('orthogonal', 'isotropic scaling')
    knn: int = 10  # neighbours per sentence

    name = "mknn"

    def check(self):
        _check_knn(self.knn)

    def matrix(self, x):
        z = unit_rows(x)
        return _neighbours(z @ z.T, self.knn).ravel() / np.sqrt(x.shape[0] * self.knn)


@register
@dataclass(frozen=True)
class Procrustes(Measure):
    """Orthogonal Procrustes similarity of the centred representations, ||X^T Y||_* / (||X||_F ||Y||_F): the
    cosine of netrep's angular shape distance at alpha = 1 (Williams et al. 2021). Invariant to rotations and
    isotropic scaling, not to other linear maps. Prepared once as B = U S / ||S|| (the thin SVD of the centred
    X, n x r), since ||X^T Y||_* = ||Bx^T By||_* for orthogonal right factors: a pair costs an r x r SVD, not a
    features x features one."""
    invariances = ('orthogonal', 'isotropic scaling', 'translation')

    name = "procrustes"

    def prepare(self, x):
        xp = array_module(x)
        x = _finite64(x)
        x = x - x.mean(axis=0, keepdims=True)
        u, sv, _ = xp.linalg.svd(x, full_matrices=False)
        norm = float(xp.sqrt((sv * sv).sum()))
        return u * (sv / norm if norm > 0 else sv)

    def permute(self, rep, order):
        return rep[array_module(rep).asarray(order)]

    def sentences(self, rep) -> int:
        return rep.shape[0]

    def scores(self, reps_a, reps_b, pairs):
        xp = array_module(reps_a[0])
        out = np.full((len(reps_a), len(reps_b)), np.nan)
        for i, j in pairs:
            out[i, j] = float(xp.linalg.svd(reps_a[i].T @ reps_b[j], compute_uv=False).sum())
        return out


@register
@dataclass(frozen=True)
class RSA(GramMeasure):
    """Representational similarity analysis (Kriegeskorte et al. 2008): the Spearman correlation of the two
    representational dissimilarity matrices (1 - Pearson r between sentence vectors), over their upper
    triangles. Prepared as the symmetric matrix of the upper triangle's standardised ranks (zero diagonal, unit
    norm), so a pair is one inner product and a sentence permutation permutes its rows and columns. Tied
    dissimilarities (within TIE of each other: a bootstrap resample repeats sentences, whose dissimilarities to
    a third are equal but for rounding) take their mean rank, as Spearman's correlation does, so that rounding
    cannot order them (NumPy and CuPy round differently)."""
    invariances = ('isotropic scaling',)

    name = "rsa"

    def matrix(self, x):
        xp = array_module(x)
        n = x.shape[0]
        z = unit_rows(x - x.mean(axis=1, keepdims=True))
        rdm = 1.0 - z @ z.T
        i, j = xp.triu_indices(n, 1)
        ranks = mid_ranks(rdm[i, j])
        ranks -= ranks.mean()
        out = xp.zeros((n, n))
        out[i, j] = ranks
        out[j, i] = ranks
        return _unit(out)


TIE = 1e-9  # dissimilarities (in [0, 2]) closer than this are tied: float64 rounding is about 1e-16


def mid_ranks(values):
    """Ranks 0..m-1 of `values`, each run of sorted values whose neighbours lie within TIE given its mean rank."""
    xp = array_module(values)
    order = xp.argsort(values, kind="stable")
    ordered = values[order]
    starts = xp.concatenate([xp.ones(1, dtype=bool), xp.diff(ordered) > TIE])
    group = xp.cumsum(starts) - 1
    first = xp.flatnonzero(starts)
    last = xp.concatenate([first[1:], xp.asarray([ordered.shape[0]])]) - 1
    ranks = xp.empty(ordered.shape[0])
    ranks[order] = ((first + last) / 2.0)[group]
    return ranks


@register
@dataclass(frozen=True)
class CKNNA(Measure):
    """CKNNA (Huh et al. 2024, platonic-rep): CKA on the kernel restricted to mutual nearest neighbours. Rows are
    L2-normalised (as platonic-rep's pipeline feeds them), K = Z Z^T; each sentence's `knn` nearest neighbours
    by K, never itself; for a pair the mask keeps the entries (i, j) where j is among i's neighbours in both;
    the score is HSIC_u(mask K, mask L) / sqrt(HSIC_u(Mk K, Mk K) HSIC_u(Ml L, Ml L)), HSIC_u Song et al.'s
    unbiased estimator on the masked (not symmetrised) kernels. Without platonic-rep's 1e-6 in the denominator:
    a representation whose masked kernel has no variance scores NaN rather than a number near 0."""
    invariances = ('orthogonal', 'isotropic scaling')

    knn: int = 10

    name = "cknna"

    def check(self):
        _check_knn(self.knn)

    def prepare(self, x):
        x = _finite64(x)
        if x.shape[0] < 4:
            raise ValueError(f"the unbiased HSIC needs 4 sentences at least, got {x.shape[0]}")
        z = unit_rows(x)
        k = z @ z.T
        mask = _neighbours(k, self.knn)
        return k, mask, _hsic_u(mask * k, mask * k)

    def permute(self, rep, order):
        k, mask, own = rep
        order = array_module(k).asarray(order)
        return k[order][:, order], mask[order][:, order], own

    def sentences(self, rep) -> int:
        return rep[0].shape[0]

    def scores(self, reps_a, reps_b, pairs):
        out = np.full((len(reps_a), len(reps_b)), np.nan)
        for i, j in pairs:
            (k, mk, own_k), (l_, ml, own_l) = reps_a[i], reps_b[j]
            both = mk * ml
            with np.errstate(all="ignore"):
                out[i, j] = _hsic_u(both * k, both * l_) / np.sqrt(own_k * own_l)
        return out


def _hsic_u(a, b) -> float:
    """Song et al.'s (2012) unbiased HSIC of two n x n kernels (their diagonals set to 0)."""
    xp = array_module(a)
    n = a.shape[0]
    a, b = a.copy(), b.copy()
    a[xp.arange(n), xp.arange(n)] = 0.0
    b[xp.arange(n), xp.arange(n)] = 0.0
    value = (a * b.T).sum() + a.sum() * b.sum() / ((n - 1) * (n - 2)) - 2.0 * (a.sum(axis=0) @ b.sum(axis=1)) / (n - 2)
    return float(value / (n * (n - 3)))


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
            pad = xp.arange(k, kx)
            gram[n, pad, pad] = -1.0
        lam, vec = xp.linalg.eigh(gram)
        for n, (i, j, (bx, sx), _) in enumerate(chunk):
            k = bx.shape[1]
            rho = xp.sqrt(xp.clip(lam[n, kx - k:], 0.0, None))
            u = vec[n, :k, kx - k:]
            c = xp.linalg.norm(bx, axis=0)
            alpha = (sx * c) @ xp.abs(u) / xp.sqrt((c * c) @ (u * u))
            out[i, j] = float((alpha * rho).sum() / alpha.sum())
    return out
