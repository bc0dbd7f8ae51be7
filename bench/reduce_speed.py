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
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from crossrep.svcca import pair_scores, reduced_basis  # noqa: E402
from reference_svcca import reference_svcca  # noqa: E402

M, N = 194, 251


def matmul_rate(size: int = 2048, repeats: int = 3) -> float:
    """float64 GEMM FLOP/s of this machine (best of a few runs)."""
    a, b = np.random.default_rng(0).standard_normal((2, size, size))
    best = float("inf")
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


def svd_flops(rows: int, cols: int) -> float:
    """LAPACK economy SVD with vectors of a rows x cols matrix (rows <= cols): ~4 cols rows^2 + 22 rows^3."""
    return 4 * cols * rows ** 2 + 22 * rows ** 3


def values_flops(k: int) -> float:
    """Singular values only of a k x k matrix: ~ (8/3) k^3."""
    return 8 / 3 * k ** 3


def one_point(rng, languages: int, width: int, stats: dict) -> dict[str, float]:
    """Batched scores for the four families at one point; returns the per-family sums of work."""
    text_cl, speech_cl = activations(rng, languages, M, width), activations(rng, languages, M, width)
    text_cm, speech_cm = activations(rng, languages, N, width), activations(rng, languages, N, width)
    t = time.perf_counter()
    bases = {key: [reduced_basis(x) for x in xs] for key, xs in
             (("text_cl", text_cl), ("speech_cl", speech_cl), ("text_cm", text_cm), ("speech_cm", speech_cm))}
    results = {
        "text": pair_scores(bases["text_cl"]),
        "speech": pair_scores(bases["speech_cl"]),
        "text_speech": pair_scores(bases["text_cl"], bases["speech_cl"]),
        "crossmodal": pair_scores(bases["text_cm"], bases["speech_cm"], pairs=[(i, i) for i in range(languages)]),
    }
    stats["seconds"] += time.perf_counter() - t
    flops = sum(svd_flops(M, width) for _ in range(4 * languages)) + sum(svd_flops(N, width) for _ in range(2 * languages))
    k = {key: [b.shape[1] for b in v] for key, v in bases.items()}
    for fam, (a, b, pairs) in {
        "text": ("text_cl", "text_cl", [(i, j) for i in range(languages) for j in range(i + 1, languages)]),
        "speech": ("speech_cl", "speech_cl", [(i, j) for i in range(languages) for j in range(i + 1, languages)]),
        "text_speech": ("text_cl", "speech_cl", [(i, j) for i in range(languages) for j in range(languages)]),
        "crossmodal": ("text_cm", "speech_cm", [(i, i) for i in range(languages)]),
    }.items():
        n = M if fam != "crossmodal" else N
        flops += 2 * sum(k[a]) * sum(k[b]) * n if fam != "crossmodal" else sum(2 * k[a][i] * k[b][i] * n for i, _ in pairs)
        ka, kb = max(k[a]), max(k[b])
        flops += len(pairs) * values_flops(min(ka, kb)) * max(ka, kb) / min(ka, kb)
        stats["pairs"] += len(pairs)
    stats["flops"] += flops
    return {"text": (text_cl, results["text"]), "speech": (speech_cl, results["speech"]),
            "text_speech": ((text_cl, speech_cl), results["text_speech"]),
            "crossmodal": ((text_cm, speech_cm), results["crossmodal"])}


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


def run(languages: int, width: int, points: int, sample: int, rate: float) -> dict:
    rng = np.random.default_rng(width + languages)
    stats = {"seconds": 0.0, "flops": 0.0, "pairs": 0}
    per_pair, worst = [], 0.0
    for p in range(points):
        data = one_point(rng, languages, width, stats)
        if p == 0 and sample:
            sec, w, _ = pairwise_sample(data, sample, rng)
            per_pair.append(sec)
            worst = max(worst, w)
    pairwise = per_pair[0] * stats["pairs"] if per_pair else float("nan")
    return {"languages": languages, "width": width, "points": points, "pairs": stats["pairs"],
            "seconds": stats["seconds"], "pairs_per_s": stats["pairs"] / stats["seconds"],
            "pairwise_s": pairwise, "ratio": pairwise / stats["seconds"], "max_diff": worst,
            "floor_s": stats["flops"] / rate, "of_floor": stats["seconds"] / (stats["flops"] / rate),
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--sample", type=int, default=12, help="pairs per family timed pair by pair")
    ap.add_argument("--big", action="store_true", help="also run 102 languages (5,151 pairs per point and family)")
    args = ap.parse_args()
    rate = matmul_rate()
    print(f"float64 matrix multiply: {rate / 1e9:.1f} GFLOP/s")
    rows = [run(30, 1024, args.points, args.sample, rate), run(30, 4096, args.points, args.sample, rate)]
    if args.big:
        rows += [run(102, 1024, 1, 0, rate), run(102, 1024, 2, 0, rate)]
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
