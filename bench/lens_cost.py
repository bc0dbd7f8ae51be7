"""What the logit lens adds to extraction, measured side by side in one run: the same job (tiny audio LLMs, demo
data) extracted without the lens, with the lens at the last point, and at every decoder point; then the lens's
arithmetic per clip for the real 7B models (the LM head is the cost: 2 x width x vocabulary FLOPs per audio
position and point), projected from the tiny run's measured throughput ratio.

Usage: python bench/lens_cost.py [--model qwen2_audio] [--languages 3] [--sentences 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import yaml

# (width, vocabulary rows, decoder points, audio positions of a 10 s clip) of the real checkpoints
REAL = {"Qwen2-Audio-7B": (4096, 156032, 34, 250), "Qwen2.5-Omni-7B thinker": (3584, 152064, 30, 250),
        "Audio Flamingo 3": (3584, 151936, 30, 250), "SALMONN-7B (Vicuna)": (4096, 32000, 34, 88)}
PARAMS = {"Qwen2-Audio-7B": 8.4e9, "Qwen2.5-Omni-7B thinker": 8.9e9, "Audio Flamingo 3": 8.3e9,
          "SALMONN-7B (Vicuna)": 7.0e9}


def job(tmp: Path, model: str, langs: list[str], n: int, lens: dict | None) -> Path:
    d = {"name": "bench", "out": str(tmp / "run"), "data": {"root": str(tmp.parent / "data"), "demo": True,
                                                            "languages": langs, "crossmodal_sentences": n,
                                                            "crosslingual_sentences": n},
         "models": [{"name": "m", "adapter": model, "checkpoint": "tiny"}],
         "extract": {"batch_size": 8, "chunk_size": 16, "device": "cpu", "threads": 1, "feature_workers": 0},
         "similarity": {"jackknife": 4}, "executor": {"kind": "debug"}}
    if lens:
        d["analysis"] = {"lens": dict(lens, models=["m"])}
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def main() -> None:
    from crossrep.config import load_job
    from crossrep.data.demo import write_demo
    from crossrep.extract import run_all
    from crossrep.plan import create_store

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2_audio")
    ap.add_argument("--languages", type=int, default=3)
    ap.add_argument("--sentences", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    langs = ["eng", "deu", "fra", "cmn", "hin", "rus"][:args.languages]
    root = Path(tempfile.mkdtemp(prefix="crossrep-lens-bench-"))
    write_demo(root / "data", tuple(langs), sentences=args.sentences + 4, progress=False)
    setups = (("no lens", None), ("lens at out", {"points": ["out"]}), ("lens at every point", {}))
    best = {label: float("inf") for label, _ in setups}
    try:
        for repeat in range(args.repeats):  # interleaved, the best of each: the rows share the machine's state
            for label, lens in setups:
                tmp = root / f"{label.replace(' ', '_')}_{repeat}"
                tmp.mkdir()
                j = load_job(job(tmp, args.model, langs, args.sentences, lens))
                create_store(j, progress=False)
                start = time.perf_counter()  # model loading included: the same in every row
                run_all(j, progress=False)
                best[label] = min(best[label], time.perf_counter() - start)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = list(best.items())
    base = rows[0][1]
    print(f"{args.model} (tiny), {args.languages} languages x {args.sentences} sentences, whole extraction (model loading included) on 1 thread")
    print(f"{'':24} {'seconds':>8} {'ratio':>6}")
    for label, t in rows:
        print(f"{label:24} {t:8.2f} {t / base:6.2f}")
    print("\nreal models, per 10 s clip: LM-head FLOPs of the lens (2 x width x vocabulary per audio position and "
          "point) against the forward pass (2 x parameters per position, about 300 positions)")
    print(f"{'model':26} {'lens/point':>11} {'all points':>11} {'forward':>9} {'all/forward':>12}")
    for name, (width, vocab, points, audio) in REAL.items():
        per_point = 2 * width * vocab * audio
        forward = 2 * PARAMS[name] * (audio + 50)
        print(f"{name:26} {per_point:11.2e} {per_point * points:11.2e} {forward:9.2e} "
              f"{per_point * points / forward:12.2f}")


if __name__ == "__main__":
    main()
