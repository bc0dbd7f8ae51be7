"""Retrieval and probes at the study's size, on this machine: 30 languages, N = 251 sentences (the cross-modal
readout) and M = 194 (cross-lingual), width 1024, `--points` points per modality, both scorings and each alone,
run as the reduce stage runs them (crossrep.readout's tasks, one BLAS thread each), one task at a time. Prints
per direction the time per point and for all points, and the probes' time per point (one CV fit of 5 folds).

Usage: python bench/readout_speed.py [--points 17] [--width 1024] [--probe-points 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from crossrep import readout

LANGS, N, M = 30, 251, 194


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=17)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--probe-points", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    ids = np.arange(N)
    shared = rng.standard_normal((N, args.width)).astype(np.float32)

    def stored():
        return ids, shared + rng.standard_normal((N, args.width)).astype(np.float32)

    text = [stored() for _ in range(LANGS)]
    speech = [stored() for _ in range(LANGS)]
    names = ([f"l{i}" for i in range(LANGS)],) * 2
    directions = (("crossmodal (speech -> own text)", speech, text, tuple(range(N)), True, False),
                  ("text -> text, every ordered pair", text, text, tuple(range(M)), False, True),
                  ("speech -> text, every ordered pair", speech, text, tuple(range(M)), False, False))
    print(f"{LANGS} languages, N = {N}, M = {M}, width {args.width}, {args.points} points; one task at a time")
    print(f"{'direction':<38}{'scorings':<18}{'s / point':>10}{'s, all points':>15}")
    total = {}
    for label, src, tgt, sent, within, same in directions:
        for scorings in (["cosine"], ["margin"], ["cosine", "margin"]):
            cfg = {"scorings": scorings, "k": 4, "center": False, "bootstrap": 200, "seed": 0, "backend": "numpy"}
            start = time.perf_counter()
            readout.retrieval_task(cfg, src, tgt, [sent] * LANGS, names, within, same)
            sec = time.perf_counter() - start
            total[label, tuple(scorings)] = sec * args.points
            print(f"{label:<38}{'+'.join(scorings):<18}{sec:>10.2f}{sec * args.points:>15.1f}")
    both = sum(v for (lbl, s), v in total.items() if len(s) == 2)
    n_dir = sum(1 for d in directions) + 1  # speech -> speech costs as text -> text
    both += total[directions[1][0], ("cosine", "margin")]
    print(f"all {n_dir} directions, both scorings, {args.points} points: {both:.0f} s on one core "
          f"({both / 60:.1f} min; the reduce stage runs them on `similarity.workers` cores)")
    cfg = {"folds": 5, "permutations": 1000, "bootstrap": 200, "c": 1.0, "seed": 0}
    reps = [((ids, x[1]), tuple(range(M)), f"l{i}") for i, x in enumerate(text)]
    labels = [np.full(M, i) for i in range(LANGS)]
    groups = [np.arange(M)] * LANGS
    start = time.perf_counter()
    for _ in range(args.probe_points):
        readout.probe_task(cfg, reps, labels, groups, "bench")
    sec = (time.perf_counter() - start) / args.probe_points
    print(f"language probe, {LANGS * M} rows x {args.width}: {sec:.1f} s per point; "
          f"{4 * args.points} probes per model (text, speech, pooled, modality): {sec * 4 * args.points / 60:.1f} min "
          f"on one core (pooled and modality have twice the rows)")


if __name__ == "__main__":
    main()
