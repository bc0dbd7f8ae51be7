"""What speaker redraws cost: one model's reduction with `similarity.speakers` S = 0, 4 and 10 beside the sentence
jackknife's G = 10 groups, side by side in one run.

Simulated activations (tests/synthetic.py's SpeakerStore: two readers per language, every other key read by
both), one model with the study's families, SVCCA and debiased CKA, K = 4 permutations, the reduction's Dask
graph on this machine's cores. Columns: seconds, the ratio to S = 0, and the seconds a redraw adds against the
seconds a jackknife group costs (both recompute the tested families: crossmodal, text, speech).

    python bench/speakers_cost.py [--languages 12] [--sentences 60] [--width 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import synthetic  # noqa: E402
from crossrep import results  # noqa: E402
from crossrep.languages import expand  # noqa: E402


def run(store, jackknife: int, speakers: int, workers: int) -> float:
    job = synthetic.cal_job(("svcca", "cka_debiased"), 4, jackknife, 0, speakers=speakers)
    job.similarity = type(job.similarity)(**{**vars(job.similarity), "workers": workers})
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        results.model_dataset(job, store, "sim")
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--languages", type=int, default=12)
    ap.add_argument("--sentences", type=int, default=60)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    languages = list(expand("paper", "languages"))[:args.languages]
    plan = synthetic.cal_plan(n=args.sentences, width=args.width, languages=languages)
    store = synthetic.SpeakerStore(plan, synthetic.null_weights, 0)
    rows = [("G=0, S=0", run(store, 0, 0, args.workers)), ("G=10, S=0", run(store, 10, 0, args.workers)),
            ("G=10, S=4", run(store, 10, 4, args.workers)), ("G=10, S=10", run(store, 10, 10, args.workers))]
    plain, jack = rows[0][1], rows[1][1]
    print(f"{len(languages)} languages, {args.sentences} sentences, width {args.width}, {len(plan.points['text'])} text "
          f"and {len(plan.points['speech'])} speech points, svcca + cka_debiased, K=4, {args.workers} workers")
    print(f"{'setting':<12}{'seconds':>10}{'vs G=10,S=0':>14}{'per redraw s':>14}{'per group s':>13}")
    group = (jack - plain) / 10
    for name, seconds in rows:
        s = int(name.split("S=")[1])
        extra = f"{(seconds - jack) / s:14.2f}" if s else f"{'':>14}"
        print(f"{name:<12}{seconds:10.2f}{seconds / jack:14.2f}{extra}{group:13.2f}")


if __name__ == "__main__":
    main()
