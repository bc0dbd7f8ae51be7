"""Reference outputs of the peers' own packages for crossrep's shape measures, on seeded inputs.

Run in the venv of setup.sh (it imports netrep, rsatoolbox and platonic-rep's metrics.py, never crossrep):
    .venv-shape-ref/bin/python tests/shape_reference/make_reference.py tests/data/shape_reference.npz

For each case (x_i, y_i: sentences x features, float64; related pairs, unrelated pairs, unequal widths):
- procrustes_i: netrep's LinearMetric(alpha=1, center_columns=True, score_method="angular").fit_score(x, y), the
  angular shape distance (crossrep's `procrustes` is its cosine);
- rsa_i: rsatoolbox's compare(calc_rdm(Dataset(x), method="correlation"), calc_rdm(Dataset(y), ...),
  method="spearman");
- cknna_i: platonic-rep's AlignmentMetrics.cknna(A, B, topk=KNN, distance_agnostic=False, unbiased=True) on the
  rows L2-normalised as its pipeline does (torch.nn.functional.normalize), float64 tensors. Its metrics.py
  imports torchaudio at the top for an edit-distance metric cknna does not use: an empty module stands in for
  it, so torchaudio (and its torch pin) is not needed. Its denominator carries +1e-6 (crossrep's does not).
"""

import os
import sys
import types

import numpy as np

KNN = 10
CASES = ((50, 12, 12, 0.6), (60, 8, 20, 0.3), (40, 16, 16, 0.0), (80, 24, 10, 1.0), (45, 6, 6, 0.1))


def inputs():
    rng = np.random.default_rng(2026)
    out = []
    for n, da, db, signal in CASES:
        z = rng.standard_normal((n, 4))
        x = z @ rng.standard_normal((4, da)) * signal + rng.standard_normal((n, da)) + rng.standard_normal(da)
        y = z @ rng.standard_normal((4, db)) * signal + rng.standard_normal((n, db)) + rng.standard_normal(db)
        out.append((x, y))
    return out


def main(path: str) -> None:
    import torch
    from netrep.metrics import LinearMetric
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm, compare

    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    sys.modules.setdefault("torchaudio.functional", types.ModuleType("torchaudio.functional"))
    sys.path.insert(0, os.path.join(sys.prefix, "platonic-rep"))
    from metrics import AlignmentMetrics

    arrays = {"knn": np.array(KNN)}
    for i, (x, y) in enumerate(inputs()):
        arrays[f"x_{i}"], arrays[f"y_{i}"] = x, y
        arrays[f"procrustes_{i}"] = np.array(LinearMetric(alpha=1.0, center_columns=True,
                                                          score_method="angular").fit_score(x, y))
        rx = calc_rdm(Dataset(x), method="correlation")
        ry = calc_rdm(Dataset(y), method="correlation")
        arrays[f"rsa_{i}"] = np.array(float(np.asarray(compare(rx, ry, method="spearman")).ravel()[0]))
        a = torch.nn.functional.normalize(torch.from_numpy(x), dim=-1)
        b = torch.nn.functional.normalize(torch.from_numpy(y), dim=-1)
        arrays[f"cknna_{i}"] = np.array(float(AlignmentMetrics.cknna(a, b, topk=KNN, distance_agnostic=False,
                                                                     unbiased=True)))
        print(i, x.shape, y.shape, {k: float(arrays[f"{k}_{i}"]) for k in ("procrustes", "rsa", "cknna")})
    np.savez(path, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
