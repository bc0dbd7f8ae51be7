"""Reduction speed: crossrep's batched SVCCA against pair-by-pair google/svcca, side by side in one run.

Workload of the study's size (synthetic activations): 30 languages, 20 points, M = 194 shared sentences for
the cross-lingual families (text-text and speech-speech: 435 pairs each; text-speech: 900 pairs) and N = 251
for cross-modal (30 pairs), at 1024 and at 4096 features; then 102 languages (5,151 pairs per point and
family). Pair-by-pair time is measured on a sample of pairs and scaled to all pairs. The floor is the
method's floating-point operations divided by this machine's float64 matrix-multiply rate, measured here.

    python bench/reduce_speed.py [--points 20] [--sample 12] [--big]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from crossrep.svcca import pair_scores, reduced_basis  # noqa: E402
from reference_svcca import reference_svcca  # noqa: E402

M, N = 194, 251


def matmul_rate(size: int = 2048, repeats: int = 3) -> float:
    """float64 GEMM FLOP/s of one core (best of a few runs); the floor assumes every worker runs at it."""
    a, b = np.random.default_rng(0).standard_normal((2, size, size))
    best = float("inf")
    with threadpool_limits(limits=1):
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best


def activations(rng, languages: int, n: int, width: int) -> list[np.ndarray]:
    """Related representations: a shared low-rank signal, per-language mixing, noise."""
    shared = rng.standard_normal((n, 64))
    return [np.tanh(shared @ rng.standard_normal((64, width)) / 8 + 0.5 * rng.standard_normal((n, width)))
            for _ in range(languages)]


def basis_flops(n: int, d: int) -> float:
    """Centred Gram matrix (2 n^2 d) and its symmetric eigen-decomposition with vectors (~4 n^3)."""
    return 2 * n * n * d + 4 * n ** 3


def pair_flops(ka: int, kb: int, n: int) -> float:
    """Block product (2 ka kb n), the block's smaller Gram matrix (2 k^2 K), its eigenvalues (4/3 k^3)."""
    k, big = min(ka, kb), max(ka, kb)
    return 2 * ka * kb * n + 2 * k * k * big + 4 / 3 * k ** 3


CHUNK = 128  # pairs per task, as crossrep.reduce splits a family


def _basis(x):
    with threadpool_limits(limits=1):
        return reduced_basis(x)


def _pairs(a, b, pairs):
    with threadpool_limits(limits=1):
        return pair_scores(a, b, pairs=pairs)


def one_point(rng, languages: int, width: int, stats: dict, pool) -> dict:
    """The four families at one point as crossrep.reduce runs them: one task per basis, then tasks of
    CHUNK pairs, all on a pool of `workers` threads; timed without the data generation."""
    sets = {"text_cl": activations(rng, languages, M, width), "speech_cl": activations(rng, languages, M, width),
            "text_cm": activations(rng, languages, N, width), "speech_cm": activations(rng, languages, N, width)}
    upper = [(i, j) for i in range(languages) for j in range(i + 1, languages)]
    families = {"text": ("text_cl", "text_cl", upper), "speech": ("speech_cl", "speech_cl", upper),
                "text_speech": ("text_cl", "speech_cl", [(i, j) for i in range(languages) for j in range(languages)]),
                "crossmodal": ("text_cm", "speech_cm", [(i, i) for i in range(languages)])}
    t = time.perf_counter()
    flat = [(key, x) for key, xs in sets.items() for x in xs]
    bases_flat = list(pool.map(lambda kx: _basis(kx[1]), flat))
    bases = {key: bases_flat[k * languages:(k + 1) * languages] for k, key in enumerate(sets)}
    tasks = [(fam, a, b, pairs[c:c + CHUNK]) for fam, (a, b, pairs) in families.items()
             for c in range(0, len(pairs), CHUNK)]
    parts = list(pool.map(lambda task: _pairs(bases[task[1]], bases[task[2]], task[3]), tasks))
    stats["seconds"] += time.perf_counter() - t
    out = {}
    for fam, (a, b, pairs) in families.items():
        scores = np.full((languages, languages), np.nan)
        for (f, _, _, chunk), part in zip(tasks, parts):
            if f == fam:
                for i, j in chunk:
                    scores[i, j] = part[i, j]
        n = sets[a][0].shape[0]
        ka, kb = max(x.shape[1] for x in bases[a]), max(x.shape[1] for x in bases[b])
        stats["flops"] += len(pairs) * pair_flops(ka, kb, n)
        stats["pairs"] += len(pairs)
        out[fam] = (sets[a] if fam in ("text", "speech") else (sets[a], sets[b]), scores)
    stats["flops"] += sum(basis_flops(*x.shape) for _, x in flat)
    return out


def pairwise_sample(data: dict, sample: int, rng) -> tuple[float, float, int]:
    """Seconds per pair of the literal google/svcca algorithm, and the largest difference to the batched scores."""
    seconds, worst, count = 0.0, 0.0, 0
    for fam, (xs, scores) in data.items():
        languages = scores.shape[0]
        for _ in range(sample):
            i, j = rng.integers(languages), rng.integers(languages)
            if fam in ("text", "speech"):
                while j == i:
                    j = rng.integers(languages)
                x, y = xs[i], xs[j]
            elif fam == "text_speech":
                x, y = xs[0][i], xs[1][j]
            else:
                j = i
                x, y = xs[0][i], xs[1][i]
            t = time.perf_counter()
            ref = reference_svcca(x, y)
            seconds += time.perf_counter() - t
            worst = max(worst, abs(ref - scores[i, j]))
            count += 1
    return seconds / count, worst, count


def run(languages: int, width: int, points: int, sample: int, rate: float, workers: int) -> dict:
    rng = np.random.default_rng(width + languages)
    stats = {"seconds": 0.0, "flops": 0.0, "pairs": 0}
    per_pair, worst = [], 0.0
    with ThreadPoolExecutor(workers) as pool:
        for p in range(points):
            data = one_point(rng, languages, width, stats, pool)
            if p == 0 and sample:
                sec, w, _ = pairwise_sample(data, sample, rng)
                per_pair.append(sec)
                worst = max(worst, w)
    pairwise = per_pair[0] * stats["pairs"] if per_pair else float("nan")
    return {"languages": languages, "width": width, "points": points, "pairs": stats["pairs"],
            "seconds": stats["seconds"], "pairs_per_s": stats["pairs"] / stats["seconds"],
            "pairwise_s": pairwise, "ratio": pairwise / stats["seconds"], "max_diff": worst,
            "floor_s": stats["flops"] / (rate * workers),
            "of_floor": stats["seconds"] * rate * workers / stats["flops"],
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--sample", type=int, default=12, help="pairs per family timed pair by pair")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="concurrent blocks (Dask threads)")
    ap.add_argument("--big", action="store_true", help="also run 102 languages (5,151 pairs per point and family)")
    args = ap.parse_args()
    rate = matmul_rate()
    print(f"float64 matrix multiply: {rate / 1e9:.1f} GFLOP/s per core; {args.workers} workers")
    rows = [run(30, 1024, args.points, args.sample, rate, args.workers),
            run(30, 4096, args.points, args.sample, rate, args.workers)]
    if args.big:
        rows += [run(102, 1024, 1, 0, rate, args.workers), run(102, 1024, 2, 0, rate, args.workers)]
    head = ("langs", "width", "points", "pairs", "seconds", "pairs/s", "pairwise s", "ratio", "max diff",
            "floor s", "x floor", "peak GB")
    print(" | ".join(f"{h:>10}" for h in head))
    for r in rows:
        print(" | ".join(f"{v:>10}" for v in (
            r["languages"], r["width"], r["points"], r["pairs"], f"{r['seconds']:.1f}", f"{r['pairs_per_s']:.0f}",
            f"{r['pairwise_s']:.0f}", f"{r['ratio']:.0f}x", f"{r['max_diff']:.1e}", f"{r['floor_s']:.1f}",
            f"{r['of_floor']:.2f}", f"{r['peak_gb']:.1f}")))


if __name__ == "__main__":
    main()
