"""Calibration of the findings' verdicts, by simulation through the real reduction graph, measures and tests.

Simulated activations (tests/synthetic.py: a meaning shared by every language and modality, a component shared by
every language of one modality on the same sentences, a language component shared by its two modalities, noise)
for one model shaped like tiny SeamlessM4T (text in, 1..4; speech 1..4 and a length adaptor), 15 languages (5
per resource level), N = M = 36 sentences, width 16, K = 4 permutations per cell, B = 10 sentence-bootstrap
replicates, SVCCA and debiased CKA, alpha = 0.05, are reduced by `crossrep.results.model_dataset` and tested by
`crossrep.analysis.findings` exactly as a run is. Three kinds of data:
  (a) no sentence correspondence: every array's latents drawn anew (every score at chance);
  (b) structure with every finding absent: shared meaning, modality-shared sentence components, language
      components; text and speech equally aligned, cross-modal as aligned as cross-lingual text;
  (c) every finding planted, at several strengths (1 = the strength of the suite's planted run).
Printed per finding and measure: false "holds" and false "does not hold" rates before adjustment (nominal
alpha / 2 each: the tests are two-sided), with Wilson 95 % intervals and the limit nominal + 2 standard errors;
the family-wise rate after Holm's adjustment (family: the finding over both measures; nominal alpha); power by
strength after adjustment; interval coverage. Under (a) and (b) the true effect is 0, so coverage of the raw
95 % interval is 1 minus the two error rates; under (c) it is the coverage of the estimator's mean over the
simulations. The table of the installed version is docs-quoted by the report's methods section
(`analysis/calibration.json`, written with --write).

Usage: python bench/calibration.py [--seeds 500] [--power-seeds 100] [--strengths 0.25 0.5 0.75 1]
       [--processes 2] [--write]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

MEASURES = ("svcca", "cka_debiased")
ALPHA = 0.05
FINDINGS = range(1, 7)


def one(args) -> list[dict]:
    """The findings' rows for one simulated dataset."""
    import synthetic
    from crossrep.analysis import findings

    kind, seed, strength = args
    scenario = synthetic.planted_weights if kind == "planted" else synthetic.null_weights
    with contextlib.redirect_stderr(io.StringIO()):  # no progress bar per simulation
        ds, sharing = synthetic.simulate(scenario, seed, strength, corresponding=kind != "none", measures=MEASURES)
    tested = findings.test_model(ds, "sim", "seamless_m4t_v2", sharing)
    rows = findings.decide(tested, ALPHA, {m: "" for m in MEASURES})
    return [{"kind": kind, "seed": seed, "strength": strength, "finding": r.finding, "measure": r.measure,
             "value": r.value, "raw_low": r.raw_low, "raw_high": r.raw_high, "p": r.p_value,
             "p_adjusted": r.p_adjusted, "verdict": r.verdict, "se": r.se, "df": r.df,
             "se_languages": r.se_languages, "se_sentences": r.se_sentences} for r in rows]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n:6.1%} [{lo:5.1%}, {hi:5.1%}]"


def summarise(rows: list[dict]) -> dict:
    """Per kind, finding and measure: error rates, family-wise rates, power, coverage."""
    out: dict = {"alpha": ALPHA, "measures": list(MEASURES), "null": {}, "power": {}}
    for kind in ("none", "absent"):
        mine = [r for r in rows if r["kind"] == kind]
        seeds = sorted({r["seed"] for r in mine})
        n = len(seeds)
        limit = ALPHA / 2 + 2 * np.sqrt(ALPHA / 2 * (1 - ALPHA / 2) / n) if n else float("nan")
        fw_limit = ALPHA + 2 * np.sqrt(ALPHA * (1 - ALPHA) / n) if n else float("nan")
        table = {}
        for f in FINDINGS:
            entry = {}
            for m in MEASURES:
                rs = [r for r in mine if r["finding"] == f and r["measure"] == m and r["p"] is not None]
                holds = sum(r["p"] < ALPHA and r["value"] > 0 for r in rs)
                fails = sum(r["p"] < ALPHA and r["value"] < 0 for r in rs)
                covered = sum(r["raw_low"] <= 0 <= r["raw_high"] for r in rs)
                entry[m] = {"n": len(rs), "false_holds": holds, "false_does_not_hold": fails, "covered": covered}
            family = 0
            for s in seeds:
                verdicts = [r["verdict"] for r in mine if r["seed"] == s and r["finding"] == f]
                family += any(v in ("holds", "does not hold") for v in verdicts)
            entry["familywise"] = family
            table[f] = entry
        out["null"][kind] = {"seeds": n, "limit": limit, "familywise_limit": fw_limit, "findings": table}
    planted = [r for r in rows if r["kind"] == "planted"]
    for strength in sorted({r["strength"] for r in planted}):
        table = {}
        for f in FINDINGS:
            entry = {}
            for m in MEASURES:
                rs = [r for r in planted if r["strength"] == strength and r["finding"] == f and r["measure"] == m
                      and r["value"] is not None]
                values = np.array([r["value"] for r in rs])
                target = float(values.mean()) if len(values) else float("nan")
                covered = sum(r["raw_low"] <= target <= r["raw_high"] for r in rs if r["raw_low"] is not None)
                entry[m] = {"n": len(rs), "holds": sum(r["verdict"] == "holds" for r in rs),
                            "holds_unadjusted": sum(r["p"] is not None and r["p"] < ALPHA and r["value"] > 0
                                                    for r in rs),
                            "covered": covered, "mean": target}
            table[f] = entry
        out["power"][str(strength)] = table
    return out


def show(summary: dict) -> None:
    a = summary["alpha"]
    for kind, label in (("none", "(a) no sentence correspondence"), ("absent", "(b) structure, findings absent")):
        s = summary["null"].get(kind)
        if not s or not s["seeds"]:
            continue
        print(f"\n{label}: {s['seeds']} simulations; per test nominal {a / 2:.1%} each way (two-sided at {a}), "
              f"limit {s['limit']:.1%}; family-wise after Holm nominal {a:.0%}, limit {s['familywise_limit']:.1%}")
        print("| finding | measure | false holds [95 % CI] | false does not hold [95 % CI] | 95 % interval covers 0 "
              "| family-wise (Holm) |")
        print("|---|---|---|---|---|---|")
        for f, entry in s["findings"].items():
            for m in summary["measures"]:
                e = entry[m]
                n = e["n"]
                fam = rate(entry["familywise"], s["seeds"]) if m == summary["measures"][0] else ""
                print(f"| {f} | {m} | {rate(e['false_holds'], n)} | {rate(e['false_does_not_hold'], n)} | "
                      f"{e['covered'] / n:6.1%} | {fam} |")
    if summary["power"]:
        strengths = list(summary["power"])
        print(f"\n(c) planted: share declared \"holds\" after Holm's adjustment (family: both measures); "
              f"strengths {', '.join(strengths)}")
        print("| finding | measure | " + " | ".join(f"s = {x}" for x in strengths) + " | coverage at s = 1 |")
        print("|---|---|" + "---|" * len(strengths) + "---|")
        for f in FINDINGS:
            for m in summary["measures"]:
                cells = []
                for x in strengths:
                    e = summary["power"][x][str(f)][m] if str(f) in summary["power"][x] else summary["power"][x][f][m]
                    cells.append(f"{e['holds'] / max(e['n'], 1):5.1%}")
                last = summary["power"][strengths[-1]]
                e = last[str(f)][m] if str(f) in last else last[f][m]
                print(f"| {f} | {m} | " + " | ".join(cells) + f" | {e['covered'] / max(e['n'], 1):5.1%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=500, help="simulations of each null kind")
    ap.add_argument("--power-seeds", type=int, default=100, help="simulations per planted strength")
    ap.add_argument("--strengths", type=float, nargs="*", default=[0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="write analysis/calibration.json (the report quotes it)")
    ap.add_argument("--rows", type=Path, help="also write every simulation's rows (JSON lines) here")
    args = ap.parse_args()
    jobs = [(kind, 10_000 * k + s, 0.0) for k, kind in enumerate(("none", "absent")) for s in range(args.seeds)]
    jobs += [("planted", 50_000 + s, x) for x in args.strengths for s in range(args.power_seeds)]
    started = time.time()
    rows: list[dict] = []
    with ProcessPoolExecutor(args.processes) as pool:
        for k, got in enumerate(pool.map(one, jobs, chunksize=4), 1):
            rows += got
            if k % 50 == 0 or k == len(jobs):
                print(f"  {k}/{len(jobs)} simulations, {time.time() - started:.0f} s", file=sys.stderr, flush=True)
    if args.rows:
        args.rows.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = summarise(rows)
    summary["config"] = {"languages": 15, "per_level": 5, "sentences": 36, "width": 16, "permutations": 4,
                         "bootstrap": 10, "seeds": args.seeds, "power_seeds": args.power_seeds,
                         "seconds": round(time.time() - started)}
    show(summary)
    if args.write:
        from crossrep import __version__

        summary["crossrep_version"] = __version__
        (ROOT / "analysis" / "calibration.json").write_text(json.dumps(summary, indent=1))
        print("\nwrote analysis/calibration.json")


if __name__ == "__main__":
    main()
