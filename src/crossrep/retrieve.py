"""Retrieval: can row i of one representation find row i of another among all its rows? (the xsim error of
LASER and SONAR is 1 - this accuracy).

Scoring by cosine, or by the ratio margin of Artetxe and Schwenk (2019): cos(x, y) divided by the mean of
(the mean cosine of x to its k nearest targets) and (the mean cosine of y to its k nearest sources), the best
target taken over all targets. `center` first removes each side's mean vector. The score matrix is built a
block of source rows at a time, so 1,000+ sentences never hold more than `block` x N scores; ties go to the
lowest target index. NumPy or CuPy arrays, float64.
"""

from __future__ import annotations

import numpy as np

from .measures import unit_rows
from .svcca import array_module

BLOCK = 256  # source rows whose scores against every target are held at once
SCORINGS = ("cosine", "margin")


def retrieval(src, tgt, scoring: str = "cosine", k: int = 4, center: bool = False, indices: bool = False,
              block: int = BLOCK):
    """Top-1 accuracy of the rows of `src` (n x d1) retrieving their own row of `tgt` (n x d2; for cosine the
    widths must agree, as for any retrieval in one space); with `indices`, also the retrieved target per row."""
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
    if not (bool(xp.isfinite(src).all()) and bool(xp.isfinite(tgt).all())):
        raise ValueError("activations contain NaN or infinity")
    a, b = _unit(src, center), _unit(tgt, center)
    if scoring == "margin":
        forward = xp.concatenate([_top_mean(a[s:s + block] @ b.T, k, xp) for s in range(0, n, block)])
        backward = xp.concatenate([_top_mean(b[s:s + block] @ a.T, k, xp) for s in range(0, n, block)])
    found = []
    for s in range(0, n, block):
        scores = a[s:s + block] @ b.T
        if scoring == "margin":
            scores = scores / ((forward[s:s + block, None] + backward[None, :]) / 2.0)
        found.append(xp.argmax(scores, axis=1))  # the first maximum: ties go to the lowest index
    best = xp.concatenate(found)
    best = best.get() if xp is not np else best
    accuracy = float((best == np.arange(n)).mean())
    return (accuracy, best) if indices else accuracy


def _unit(x, center: bool):
    return unit_rows(x - x.mean(axis=0, keepdims=True) if center else x)


def _top_mean(scores, k: int, xp):
    """The mean of each row's k largest scores."""
    return -xp.sort(-scores, axis=1)[:, :k].mean(axis=1)
