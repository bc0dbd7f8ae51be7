"""Retrieval: can row i of one representation find row i of another among all its rows? (the xsim error of
LASER and SONAR is 1 - this accuracy).

Scoring by cosine, or by the ratio margin of Artetxe and Schwenk (2019): cos(x, y) divided by the mean of
(the mean cosine of x to its k nearest targets) and (the mean cosine of y to its k nearest sources), the best
target taken over all targets (LASER rescores only each source's k cosine-nearest candidates; here every target
competes). `center` first removes each side's mean vector. The score matrix is built a block of source rows at
a time, so 1,000+ sentences never hold more than `block` x N scores; ties go to the lowest target index. One
pass gives both directions (a -> b and b -> a: the margin is symmetric in its two sides). NumPy or CuPy arrays,
float64.
"""

from __future__ import annotations

import numpy as np

from .config import SCORINGS
from .measures import unit_rows
from .svcca import array_module

BLOCK = 256  # source rows whose scores against every target are held at once


def retrieval(src, tgt, scoring: str = "cosine", k: int = 4, center: bool = False, indices: bool = False,
              block: int = BLOCK):
    """Top-1 accuracy of the rows of `src` (n x d) retrieving their own row of `tgt` (n x d: retrieval compares
    in one space); with `indices`, also the retrieved target per row (a NumPy array)."""
    if scoring not in SCORINGS:
        raise ValueError(f"scoring: expected one of {', '.join(SCORINGS)}, got {scoring!r}")
    xp = array_module(src)
    src, tgt = xp.asarray(src, dtype=xp.float64), xp.asarray(tgt, dtype=xp.float64)
    if src.ndim != 2 or tgt.ndim != 2 or src.shape != tgt.shape:
        raise ValueError(f"src and tgt must be (sentences x features) arrays of one shape, got {src.shape} and "
                         f"{tgt.shape}")
    n = src.shape[0]
    if scoring == "margin" and not 1 <= k < n:
        raise ValueError(f"k: between 1 and {n - 1} neighbours, got {k}")
    best = retrieved(prepare(src, center), prepare(tgt, center), (scoring,), k, block)[scoring][0]
    accuracy = float((best == np.arange(n)).mean())
    return (accuracy, best) if indices else accuracy


def prepare(x, center: bool):
    """Rows as unit vectors in float64 (after removing the mean row with `center`); refuses NaN and infinity."""
    xp = array_module(x)
    x = xp.asarray(x, dtype=xp.float64)
    if not bool(xp.isfinite(x).all()):
        raise ValueError("activations contain NaN or infinity")
    return unit_rows(x - x.mean(axis=0, keepdims=True) if center else x)


def retrieved(a, b, scorings: tuple[str, ...], k: int, block: int = BLOCK) -> dict[str, tuple]:
    """For prepared (unit-row) a and b of n rows each: per scoring, (the index of b each row of a retrieves, the
    index of a each row of b retrieves), NumPy arrays. Pass 1 over blocks of a's rows takes the cosine winners
    and both directions' k-nearest means; pass 2 (margin only) rescores, reusing pass 1's scores when one block
    holds them all."""
    xp = array_module(a)
    n = a.shape[0]
    f = xp.empty(n)  # mean cosine of each row of a to its k nearest rows of b
    top = None  # the k largest cosines of each row of b to rows of a seen so far
    fwd, bwd = [], _Winner(n, xp)
    cached = None
    for s in range(0, n, block):
        scores = a[s:s + block] @ b.T
        fwd.append(xp.argmax(scores, axis=1))  # the first maximum: ties go to the lowest index
        bwd.update(scores, s)
        if "margin" in scorings:
            f[s:s + block] = -xp.sort(-scores, axis=1)[:, :k].mean(axis=1)
            both = scores if top is None else xp.concatenate([top, scores])
            top = -xp.sort(-both, axis=0)[:k]
        if n <= block:
            cached = scores
    out = {"cosine": (_host(xp.concatenate(fwd)), _host(bwd.index))}
    if "margin" in scorings:
        g = top.mean(axis=0)
        mfwd, mbwd = [], _Winner(n, xp)
        for s in range(0, n, block):
            scores = cached if cached is not None else a[s:s + block] @ b.T
            margin = scores / ((f[s:s + block, None] + g[None, :]) / 2.0)
            mfwd.append(xp.argmax(margin, axis=1))
            mbwd.update(margin, s)
        out["margin"] = (_host(xp.concatenate(mfwd)), _host(mbwd.index))
    return {name: out[name] for name in scorings}


class _Winner:
    """The best row of a for each column of b over blocks of a's rows, the first (lowest) row on ties."""

    def __init__(self, n: int, xp):
        self.value, self.index, self.xp = xp.full(n, -xp.inf), xp.zeros(n, dtype=xp.int64), xp

    def update(self, scores, start: int) -> None:
        xp = self.xp
        best = xp.argmax(scores, axis=0)
        value = scores[best, xp.arange(scores.shape[1])]
        better = value > self.value  # strictly: an equal score in a later block keeps the earlier row
        self.value = xp.where(better, value, self.value)
        self.index = xp.where(better, best + start, self.index)


def _host(x) -> np.ndarray:
    return x.get() if hasattr(x, "get") else np.asarray(x)
