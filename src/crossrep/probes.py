"""Linear probes: can a multinomial logistic regression tell a label (the language, the modality) from a layer's
representation of held-out sentences?

Cross-validated with folds grouped by sentence id, so no sentence is seen in training in any language or
modality. Features are standardised on each training fold. The chance level is the mean accuracy with the labels
permuted within each sentence id (every sentence keeps its set of labels, so the classes stay balanced and the
sentence structure stays: only the link between a row's representation and its label is broken), with the
add-one p-value of the observed accuracy among them; the interval resamples sentence ids (all rows of a drawn
sentence together: rows of one sentence are dependent) over the held-out hits. NumPy, float64.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from . import stats


@dataclass(frozen=True)
class Probe:
    """One probe's numbers: accuracy, the permutation chance level (mean) and its replicates, the add-one p-value,
    and the sentence-bootstrap replicates of the accuracy (empty with no bootstrap)."""

    accuracy: float
    chance: float
    null: np.ndarray
    p: float
    boot: np.ndarray


def predictions(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int, c: float) -> np.ndarray:
    """The held-out prediction of every row: folds over the distinct sentence ids in `groups`, each a fold's
    rows held out once; a fold without every label in training still predicts (among the labels it saw)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("activations contain NaN or infinity")
    out = np.empty(len(labels), dtype=labels.dtype)
    for train, test in GroupKFold(n_splits=folds).split(x, labels, groups):
        scale = StandardScaler().fit(x[train])
        if np.unique(labels[train]).size < 2:
            out[test] = labels[train][0]
            continue
        model = LogisticRegression(C=c, max_iter=2000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a separable fold converges slowly; its predictions are what count
            model.fit(scale.transform(x[train]), labels[train])
        out[test] = model.predict(scale.transform(x[test]))
    return out


def probe(x: np.ndarray, labels, groups, folds: int, permutations: int, bootstrap: int, c: float, seed: int,
          name: str) -> Probe:
    """Cross-validated accuracy of predicting `labels` from the rows of `x`, grouped by `groups` (sentence ids),
    with its permutation null and sentence-bootstrap replicates; `name` keys the seeded draws."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    predicted = predictions(x, labels, groups, folds, c)
    hits = predicted == labels
    accuracy = float(hits.mean())
    null = permuted_accuracy(predicted, labels, groups, permutations, stats.rng(seed, "probe", name))
    ids, where = np.unique(groups, return_inverse=True)
    per_group = np.bincount(where, weights=hits, minlength=ids.size)
    size = np.bincount(where, minlength=ids.size)
    boot = np.array([per_group[d].sum() / size[d].sum() for d in
                     (stats.rng(seed, "probe-boot", name, b).integers(0, ids.size, ids.size)
                      for b in range(bootstrap))])
    return Probe(accuracy, float(null.mean()), null, float(stats.add_one_p(null, accuracy)), boot)


def permuted_accuracy(predicted: np.ndarray, labels: np.ndarray, groups: np.ndarray, count: int,
                      rng: np.random.Generator) -> np.ndarray:
    """The accuracy of `predicted` against `count` permutations of `labels` within each group: (count,)."""
    order = np.argsort(groups, kind="stable")
    code = np.unique(groups[order], return_inverse=True)[1]
    shuffled = np.argsort(rng.random((count, len(order))) + code, axis=1)  # a row's group dominates its key
    return (labels[order][shuffled] == predicted[order]).mean(axis=1)
