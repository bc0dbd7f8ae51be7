"""What the statistics cost beside the plain reduction, at the study's size, in one run on this machine.

One point of one model as crossrep.reduce computes it (the functions its Dask tasks call, on a pool of
`--workers` threads, BLAS single-threaded): 30 languages, the four study families (text and speech across
languages on M = 194 sentences, 435 pairs each; text vs speech across languages, 900 pairs; cross-modal on
N = 251 sentences, 30 pairs), SVCCA. Plain: every representation prepared once, every pair scored, the random
baselines. Permutation null: K more scores per pair from the prepared forms. Sentence bootstrap: B
replicates, each preparing every representation again on its resample and scoring every pair. Every point of
a model costs the same, so the ratios hold for the whole reduction; the table also projects the study's 17
points. Usage: python bench/stats_speed.py [--width 1024 4096] [--permutations K] [--bootstrap B]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from crossrep import measures, stats
from crossrep.config import DEFAULT_BOOTSTRAP, DEFAULT_PERMUTATIONS
from crossrep.reduce import PAIRS_PER_TASK, scores

L, M, N, POINTS = 30, 194, 251, 17
SIM = {"variance": 0.9, "epsilon": 1e-10, "variance_mode": "singular", "knn": 10, "seed": 0, "baseline_repeats": 5}


def activations(rng, n: int, width: int) -> list[np.ndarray]:
    shared = rng.standard_normal((n, 64))
    return [np.tanh(shared @ rng.standard_normal((64, width)) / 8 + 0.5 * rng.standard_normal((n, width)))
            + np.outer(rng.standard_normal(n), rng.standard_normal(width)) for _ in range(L)]


def _prepare(x, rows=None):
    with threadpool_limits(limits=1):
        return measures.get("svcca").prepare(x if rows is None else x[rows])


def _baseline(n, width):
    with threadpool_limits(limits=1):
        return measures.get("svcca").random_baseline(n, width, width, SIM["baseline_repeats"], 0)


def families(data):
    upper = [(i, j) for i in range(L) for j in range(i + 1, L)]
    full = [(i, j) for i in range(L) for j in range(L)]
    diag = [(i, i) for i in range(L)]
    return {"text": ("text_cl", None, upper), "speech": ("speech_cl", None, upper),
            "text_speech": ("text_cl", "speech_cl", full), "crossmodal": ("text_cm", "speech_cm", diag)}


def score_all(pool, reps, k: int) -> None:
    jobs = []
    for name, (a, b, pairs) in families(reps).items():
        for c in range(0, len(pairs), PAIRS_PER_TASK):
            jobs.append(pool.submit(scores, SIM, measures.get("svcca"), name, reps[a], None if b is None else reps[b],
                                    pairs[c:c + PAIRS_PER_TASK], k))
    for j in jobs:
        j.result()


def prepare_all(pool, data, boot=None) -> dict:
    futures = {}
    for key, xs in data.items():
        n = xs[0].shape[0]
        rows = None if boot is None else stats.resample(0, n, boot)
        futures[key] = [pool.submit(_prepare, x, rows) for x in xs]
    return {key: [f.result() for f in fs] for key, fs in futures.items()}


def run(width: int, k: int, b: int, workers: int) -> dict:
    rng = np.random.default_rng(width)
    data = {"text_cl": activations(rng, M, width), "speech_cl": activations(rng, M, width),
            "text_cm": activations(rng, N, width), "speech_cm": activations(rng, N, width)}
    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        reps = prepare_all(pool, data)
        t1 = time.perf_counter()
        score_all(pool, reps, 0)
        t2 = time.perf_counter()
        for f in [pool.submit(_baseline, n, width) for n in (M, M, M, N)]:
            f.result()
        t3 = time.perf_counter()
        score_all(pool, reps, k)
        t4 = time.perf_counter()
        for rep in range(b):
            score_all(pool, prepare_all(pool, data, rep), 0)
        t5 = time.perf_counter()
    plain = t3 - t0
    return {"prepare": t1 - t0, "pairs": t2 - t1, "baseline": t3 - t2, "plain": plain,
            "null": (t4 - t3) - (t2 - t1), "bootstrap": t5 - t4}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--permutations", type=int, default=DEFAULT_PERMUTATIONS)
    ap.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    print(f"one point, {L} languages, M={M}, N={N}, SVCCA, K={args.permutations} permutations, "
          f"B={args.bootstrap} bootstrap replicates, {args.workers} workers")
    print(f"{'width':>6} {'prepare s':>10} {'pairs s':>8} {'plain s':>8} {'null s':>8} {'null/plain':>10} "
          f"{'1 boot s':>9} {'1 boot/plain':>12} {'17 points: plain min':>21} {'null min':>9}")
    for width in args.width:
        r = run(width, args.permutations, args.bootstrap, args.workers)
        boot = r["bootstrap"] / args.bootstrap if args.bootstrap else float("nan")
        print(f"{width:>6} {r['prepare']:>10.2f} {r['pairs']:>8.2f} {r['plain']:>8.2f} {r['null']:>8.2f} "
              f"{r['null'] / r['plain']:>10.2f} {boot:>9.2f} {boot / r['plain']:>12.2f} "
              f"{POINTS * r['plain'] / 60:>21.1f} {POINTS * r['null'] / 60:>9.1f}")

if __name__ == "__main__":
    main()
