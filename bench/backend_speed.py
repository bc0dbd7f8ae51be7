"""NumPy against CuPy for the reduction and the retrieval readout, side by side in one run.

One point of one model at the study's size as crossrep.reduce computes it (the functions its Dask tasks
call): 30 languages, the four families (text and speech across languages on M = 194 sentences, 435 pairs each;
text vs speech across languages, 900 pairs; cross-modal on N = 251 sentences, 30 pairs), every representation
prepared once and every pair scored with K permutation-null shuffles, for each registered measure. NumPy runs
on a pool of `--workers` threads with single-threaded BLAS (as the reduction's Dask threads do); CuPy runs the
same tasks on one GPU from the same pool. Then retrieval (both scorings) over all 435 language pairs of one
family, both directions. Columns: seconds on each backend, the ratio, and the largest difference between
the two backends' scores. Without a GPU only the NumPy column is measured.

    python bench/backend_speed.py [--width 1024] [--permutations 4] [--workers 16]
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from crossrep import measures
from crossrep.reduce import PAIRS_PER_TASK, array_backend, scores
from crossrep.retrieve import prepare as unit, retrieved
from stats_speed import L, M, N, activations  # the same synthetic study-size activations

SIM = {"seed": 0}


def sync(xp) -> None:
    if xp is not np:
        xp.cuda.Device().synchronize()


def families(n: int):
    upper = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
    full = np.array([(i, j) for i in range(n) for j in range(n)])
    diag = np.array([(i, i) for i in range(n)])
    return {"text": ("text_cl", None, upper), "speech": ("speech_cl", None, upper),
            "text_speech": ("text_cl", "speech_cl", full), "crossmodal": ("text_cm", "speech_cm", diag)}


def reduce_point(pool, xp, data: dict, measure, k: int) -> tuple[float, dict]:
    """Prepare every representation, score every pair with K nulls; seconds and the scores by family."""
    def prep(x):
        with threadpool_limits(limits=1):
            return measure.prepare(xp.asarray(x))

    start = time.perf_counter()
    reps = {key: list(pool.map(prep, xs)) for key, xs in data.items()}
    jobs = {}
    for name, (a, b, pairs) in families(len(data["text_cl"])).items():
        jobs[name] = [pool.submit(scores, SIM, measure, name, reps[a], None if b is None else reps[b],
                                  pairs[c:c + PAIRS_PER_TASK], k) for c in range(0, len(pairs), PAIRS_PER_TASK)]
    out = {name: np.nansum(np.stack([j.result() for j in js]), axis=0) for name, js in jobs.items()}  # disjoint
    sync(xp)
    return time.perf_counter() - start, out


def retrieve_family(pool, xp, xs: list, scorings=("cosine", "margin"), k: int = 4) -> tuple[float, np.ndarray]:
    """Both directions of every language pair of one family; seconds and the retrieved indices."""
    def one(pair):
        i, j = pair
        with threadpool_limits(limits=1):
            got = retrieved(reps[i], reps[j], scorings, k)
        return np.concatenate([np.concatenate(got[s]) for s in scorings])

    start = time.perf_counter()
    reps = [unit(xp.asarray(x), False) for x in xs]
    pairs = [(i, j) for i in range(len(xs)) for j in range(i + 1, len(xs))]
    found = np.stack(list(pool.map(one, pairs)))
    sync(xp)
    return time.perf_counter() - start, found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--permutations", type=int, default=4)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--measures", nargs="*", default=sorted(measures.REGISTRY), help="none: retrieval only")
    args = ap.parse_args()
    cupy = None if array_backend("auto") is np else array_backend("auto")
    backends = [("numpy", np)] + ([("cupy", cupy)] if cupy is not None else [])
    rng = np.random.default_rng(args.width)
    data = {"text_cl": activations(rng, M, args.width), "speech_cl": activations(rng, M, args.width),
            "text_cm": activations(rng, N, args.width), "speech_cm": activations(rng, N, args.width)}
    device = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode() if cupy is not None else "none"
    print(f"one point, {L} languages, M={M}, N={N}, width {args.width}, K={args.permutations}; NumPy on "
          f"{args.workers} threads (BLAS 1 thread each); GPU: {device}")
    print(f"{'work':<28} {'numpy s':>8} {'cupy s':>8} {'numpy/cupy':>10} {'max diff':>9}")
    with ThreadPoolExecutor(args.workers) as pool:
        for name in args.measures:
            m = measures.get(name)
            got = {}
            for label, xp in backends:
                reduce_point(pool, xp, {k: v[:2] for k, v in data.items()}, m, 0)  # warm-up: kernels, plans
                got[label] = reduce_point(pool, xp, data, m, args.permutations)
            row(f"reduce {name}", got, lambda a, b: max(float(np.nanmax(np.abs(a[f] - b[f]))) for f in a))
        got = {}
        for label, xp in backends:
            retrieve_family(pool, xp, data["text_cl"][:3])
            got[label] = retrieve_family(pool, xp, data["text_cl"])
        row("retrieval text->text 870", got, lambda a, b: float((a != b).mean()))
    print("max diff: the largest score difference between the backends (retrieval: the share of queries whose "
          "retrieved sentence differs)")


def row(label: str, got: dict, diff) -> None:
    cpu = got["numpy"][0]
    if "cupy" in got:
        g = got["cupy"][0]
        print(f"{label:<28} {cpu:>8.2f} {g:>8.2f} {cpu / g:>9.1f}x {diff(got['numpy'][1], got['cupy'][1]):>9.1e}")
    else:
        print(f"{label:<28} {cpu:>8.2f} {'-':>8} {'-':>10} {'-':>9}")


if __name__ == "__main__":
    main()
