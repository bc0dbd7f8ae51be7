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

from crossrep.svcca import pair_scores, prepare, route  # noqa: E402
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


def eigen_rates(repeats: int = 3) -> dict[str, float]:
    """FLOP/s of one core in the symmetric eigen-solves the method runs, counted as the floor counts them: the
    basis step's eigen-decomposition with vectors (4 n^3, n = M) and a pair's eigenvalues (4/3 k^3)."""
    rng = np.random.default_rng(1)
    out = {}
    for name, size, flops, solve in (("eigh n=194", M, 4 * M ** 3, np.linalg.eigh),
                                      ("eigvalsh k=150", 150, 4 / 3 * 150 ** 3, np.linalg.eigvalsh),
                                      ("eigvalsh k=40", 40, 4 / 3 * 40 ** 3, np.linalg.eigvalsh)):
        a = rng.standard_normal((64, size, size))
        a = a @ a.transpose(0, 2, 1)
        best = float("inf")
        with threadpool_limits(limits=1):
            for _ in range(repeats):
                t = time.perf_counter()
                for m in a:
                    solve(m)
                best = min(best, time.perf_counter() - t)
        out[name] = flops * len(a) / best
    return out


def activations(rng, languages: int, n: int, width: int, dominant: float = 0.0) -> list[np.ndarray]:
    """Related representations: a shared low-rank signal, per-language mixing, noise; `dominant` adds one
    strong direction, as real activations often have, so that the kept directions' epsilon scales spread out."""
    shared = rng.standard_normal((n, 64))
    return [np.tanh(shared @ rng.standard_normal((64, width)) / 8 + 0.5 * rng.standard_normal((n, width)))
            + dominant * np.outer(rng.standard_normal(n), rng.standard_normal(width)) for _ in range(languages)]


def basis_flops(n: int, d: int) -> float:
    """Centred Gram matrix (symmetric: n^2 d) and its symmetric eigen-decomposition with vectors (~4 n^3)."""
    return n * n * d + 4 * n ** 3


def pair_flops(x, y) -> tuple[float, bool]:
    """A pair as `pair_scores` routes it: block product (2 n kl kr, kl = x's width or its complement's), the
    block's smaller Gram matrix (2 k^2 K), its eigenvalues (4/3 k^3); and whether it went by the complement."""
    through, x, y = route(x, y)
    n, kl, kr = x.vectors.shape[0], (x.complement.shape[1] if through else x.width), y.width
    k, big = min(kl, kr), max(kl, kr)
    return 2 * n * kl * kr + 2 * k * k * big + 4 / 3 * k ** 3, through


CHUNK = 128  # pairs per task, as crossrep.reduce splits a family
DOMINANT = 1.0  # one direction as strong as the signal: its pairs cannot take the complement route


def _basis(x):
    with threadpool_limits(limits=1):
        return prepare(x)


def _pairs(a, b, pairs):
    with threadpool_limits(limits=1):
        return pair_scores(a, b, pairs=pairs)


def one_point(rng, languages: int, width: int, dominant: float, stats: dict, pool) -> dict:
    """The four families at one point as crossrep.reduce runs them: one task per basis, then tasks of
    CHUNK pairs, all on a pool of `workers` threads; timed without the data generation."""
    sets = {key: activations(rng, languages, M if key.endswith("cl") else N, width, dominant)
            for key in ("text_cl", "speech_cl", "text_cm", "speech_cm")}
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
        for i, j in pairs:
            flops, through = pair_flops(bases[a][i], bases[b][j])
            stats["flops"] += flops
            stats["routed"] += through
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


def run(languages: int, width: int, points: int, sample: int, rate: float, workers: int,
        dominant: float = 0.0) -> dict:
    rng = np.random.default_rng(width + languages)
    stats = {"seconds": 0.0, "flops": 0.0, "pairs": 0, "routed": 0}
    per_pair, worst = [], 0.0
    with ThreadPoolExecutor(workers) as pool:
        for p in range(points):
            data = one_point(rng, languages, width, dominant, stats, pool)
            if p == 0 and sample:
                sec, w, _ = pairwise_sample(data, sample, rng)
                per_pair.append(sec)
                worst = max(worst, w)
    pairwise = per_pair[0] * stats["pairs"] if per_pair else float("nan")
    return {"languages": languages, "width": width, "data": f"dominant x{dominant:g}" if dominant else "noise-like",
            "points": points, "pairs": stats["pairs"], "routed": stats["routed"] / stats["pairs"],
            "seconds": stats["seconds"], "pairs_per_s": stats["pairs"] / stats["seconds"],
            "pairwise_s": pairwise, "ratio": pairwise / stats["seconds"], "max_diff": worst if per_pair else None,
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
    print("symmetric eigen-solves: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in eigen_rates().items()))
    rows = [run(30, 1024, args.points, args.sample, rate, args.workers),
            run(30, 4096, args.points, args.sample, rate, args.workers),
            run(30, 1024, args.points, args.sample, rate, args.workers, DOMINANT),
            run(30, 4096, args.points, args.sample, rate, args.workers, DOMINANT)]
    if args.big:
        rows += [run(102, 1024, 1, 0, rate, args.workers), run(102, 1024, 2, 0, rate, args.workers)]
    head = ("langs", "width", "data", "points", "pairs", "complement", "seconds", "pairs/s", "pairwise s",
            "ratio", "max diff", "floor s", "x floor", "peak GB")
    print(" | ".join(f"{h:>10}" for h in head))
    for r in rows:
        print(" | ".join(f"{v:>10}" for v in (
            r["languages"], r["width"], r["data"], r["points"], r["pairs"], f"{r['routed']:.0%}",
            f"{r['seconds']:.1f}", f"{r['pairs_per_s']:.0f}",
            *((f"{r['pairwise_s']:.0f}", f"{r['ratio']:.0f}x", f"{r['max_diff']:.1e}") if r["max_diff"] is not None
              else ("-", "-", "-")), f"{r['floor_s']:.1f}",
            f"{r['of_floor']:.2f}", f"{r['peak_gb']:.1f}")))


if __name__ == "__main__":
    main()
