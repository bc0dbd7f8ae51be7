"""Where extraction time goes, and how busy a GPU would be: one run on this machine, printing a table.

Measured: the real extraction (crossrep.extract, timing records as `crossrep status --timing` shows them) of
random-weight models at medium size over clips of FLEURS-like length (synthetic signals, 4-25 s, mean about
11 s): SeamlessM4T v2 (speech encoder 12 x 1024) and SALMONN (real Whisper/BEATs/Q-Former sequence lengths,
a 12 x 1024 LLaMA), each with the features featurized by one DataLoader worker (overlapped) and in the task
(not overlapped). Columns: seconds per stage, the share of wall time a forward pass ran (busy), the padding
share of the batches, and the time per sentence on the critical path that is not a forward pass (wall less
forward: the pooled vectors' host copy and checks, handing chunks to the writer thread, waiting for features;
audio decoding and writes run beside it).

Projected: one H100/H200 at 400 TFLOP/s of effective bf16 for the real-size models, forward FLOPs per 10 s
clip = 2 x parameters x positions: SeamlessM4T v2's speech encoder 0.6 B x 500 frames = 0.6 TFLOP, SONAR's
speech encoder (the same conformer, 0.6 B x 500) 0.6 TFLOP, SALMONN 3.6 TFLOP (Whisper large-v2's encoder
0.64 B x 1500 frames, BEATs 0.09 B x 500, Vicuna-7B 6.7 B x 120 tokens). The CPU featurization per clip is
measured here for each family's own featurize (CPU features, or device features: only padding and
tokenising left on the CPU), spread over the task's CPUs less one (the forward loop); the non-overlapped work
per sentence is the measured one: the pooled vectors' host copy per sentence plus a unit's fixed cost (worker
start, store reads, the last chunk's write) and its first batch's featurization, both spread over the
projected shard's sentences (`--shard-sentences`, the study's 251). Busy share = GPU time / (max(GPU time,
featurization time per worker) + that work). The last line is the lowest busy share of the three at the best feature setting.

Measured on a GPU (`--gpu`): SeamlessM4T v2 with its real encoder sizes (hidden 1024, 24 layers, 16 heads,
speech ffn 4096, text ffn 8192; random weights, a 1-layer decoder that extraction never runs) over 4 languages
x 40 FLEURS-length clips, with the paper job's GPU settings (bfloat16, batch 16, 240 s of padded audio per
batch, 4 threads), features on the CPU and on the device, 4 feature workers: per modality, the stages'
seconds, the forward pass's share of the wall time, sentences per second, and the study's extraction of this
model (30 languages x 251 sentences, both modalities) projected from the measured rates.

Usage: python bench/extract_speed.py [--cpus 19] [--sentences 16] [--languages 2]
       python bench/extract_speed.py --gpu [--sentences 40] [--languages 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

GPU = 400e12
FLOPS = {"seamless_m4t_v2": 2 * 0.6e9 * 500, "sonar": 2 * 0.6e9 * 500,
         "salmonn": 2 * (0.64e9 * 1500 + 0.09e9 * 500 + 6.7e9 * 120)}
SR = 16_000
LANGS = ("eng", "deu", "fra", "cmn")  # in the demo corpus


def fleurs_like(root: Path, languages: tuple[str, ...], sentences: int, seed: int = 0) -> Path:
    """crossrep's demo layout with synthetic speech, each clip then replaced by a FLEURS-length one."""
    from crossrep.data.demo import write_demo

    write_demo(root, languages, sentences=sentences, use_espeak=False, progress=False)
    rng = np.random.default_rng(seed)
    for wav in sorted(root.glob("*/audio/test/*.wav")):
        base, _ = sf.read(wav, dtype="float32")
        n = int(np.clip(rng.normal(11.0, 3.5), 4.0, 25.0) * SR)
        sf.write(wav, np.resize(base, n), SR, subtype="PCM_16")
    return root


def job(out: Path, root: Path, languages, sentences: int, model: dict, **extract) -> Path:
    d = {"name": out.name, "out": str(out),
         "data": {"root": str(root), "demo": False, "split": "test", "languages": list(languages),
                  "crossmodal_sentences": sentences, "crosslingual_sentences": sentences - 2, "seed": 0},
         "models": [model],
         "extract": {"batch_size": 8, "chunk_size": 16, "dtype": "float32", "device": "cpu", "threads": 1,
                     "batch_seconds": 90, **extract},
         "similarity": {"measures": ["svcca"]}, "executor": {"kind": "debug"}}
    path = out.with_suffix(".yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(d))
    return path


def extract(path: Path) -> dict:
    """Run the extraction in this process; the speech shards' timing records, summed."""
    from crossrep.config import load_job
    from crossrep.extract import run_all
    from crossrep.plan import create_store, shards
    from crossrep.store import ActivationStore
    from crossrep.timing import STAGES

    j = load_job(path)
    create_store(j, progress=False)
    start = time.perf_counter()
    run_all(j, progress=False)
    wall = time.perf_counter() - start
    store = ActivationStore(j.out)
    out = {}
    for modality in ("speech", "text"):
        records = [store.timing(k) for k in shards(j) if k.modality == modality]
        seconds = {s: sum(r["seconds"][s] for r in records) for s in STAGES}
        padded = [r["padding"] for r in records]
        out[modality] = {"seconds": seconds, "sentences": sum(r["sentences"] for r in records), "run": wall,
                         "wall": sum(r["wall"] for r in records), "padding": float(np.mean(padded)),
                         "units": len(records), "device": records[0]["device"]}
    return out


def featurize_cost(adapter, inputs, modality="speech", repeats: int = 2) -> float:
    """Seconds of CPU featurization per clip (best of `repeats`), one process, one thread."""
    import torch

    torch.set_num_threads(1)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for k in range(0, len(inputs), 8):
            adapter.featurize(modality, "eng", inputs[k:k + 8])
        best = min(best, time.perf_counter() - start)
    return best / len(inputs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", type=int, default=19, help="CPUs of one GPU's task (HoreKa: 19)")
    ap.add_argument("--sentences", type=int, help="sentences per language (default 16; --gpu: 40)")
    ap.add_argument("--languages", type=int, help="languages (default 2; --gpu: 4)")
    ap.add_argument("--shard-sentences", type=int, default=251, help="sentences per shard of the projected run "
                    "(the study's N): a unit's fixed overhead is spread over them")
    ap.add_argument("--gpu", action="store_true", help="measure SeamlessM4T v2 at its real encoder size on the GPU")
    args = ap.parse_args()
    if args.gpu:
        args.sentences, args.languages = args.sentences or 40, args.languages or 4
        return gpu_main(args)
    args.sentences, args.languages = args.sentences or 16, args.languages or 2
    import torch

    from crossrep.models.salmonn.tiny import build_tiny as salmonn_tiny
    from crossrep.models.seamless import SeamlessM4Tv2Adapter
    from crossrep.models.seamless import build_tiny as seamless_tiny
    from crossrep.models.salmonn import SalmonnAdapter
    from crossrep.models.sonar import SonarAdapter
    from crossrep.models.salmonn.tiny import tiny_paths

    langs = LANGS[:args.languages]
    tmp = Path(tempfile.mkdtemp(prefix="crossrep-bench-"))
    print(f"writing {args.languages} x {args.sentences} FLEURS-length clips and medium random models under {tmp}")
    root = fleurs_like(tmp / "data", langs, args.sentences + 8)
    seamless = seamless_tiny(tmp / "seamless", languages=langs, hidden=1024, layers=12)
    salmonn = salmonn_tiny(tmp / "salmonn", llm_width=1024, llm_layers=12)
    models = {"seamless_m4t_v2": {"name": "seamless", "adapter": "seamless_m4t_v2", "checkpoint": str(seamless)},
              "salmonn": {"name": "salmonn", "adapter": "salmonn", "checkpoint": tiny_paths(salmonn)}}

    rows = []
    for family, model in models.items():
        for label, extra in (("1 worker", {"feature_workers": 1}), ("in task", {"feature_workers": 0})):
            r = extract(job(tmp / "runs" / f"{family}-{extra['feature_workers']}", root, langs, args.sentences,
                            model, **extra))["speech"]
            rows.append((family, label, r))
    head = (f"{'model':<16} {'features':<9} {'sent':>4} {'load':>6} {'audio':>6} {'feats':>6} {'wait':>6} "
            f"{'fwd':>7} {'pool':>5} {'write':>5} {'wall':>7} {'busy':>6} {'pad':>5} {'serial/sent':>11} "
            f"{'fixed/unit':>10}")
    print("\nmeasured on this machine (CPU, float32, 1 forward thread), speech shards:")
    print(head)
    serial = {}
    for family, label, r in rows:
        s, n, wall = r["seconds"], r["sentences"], r["wall"]
        rest = (wall - s["forward"]) / n  # on the critical path, not a forward pass
        # a unit's fixed cost (worker start, store reads, the last write) apart from the per-sentence host copy;
        # waiting for features is projected separately, as max(GPU, features) and the first batch of a unit
        fixed = max(0.0, wall - s["forward"] - s["wait"] - s["pool"] - (s["features"] if label == "in task" else 0))
        if label == "1 worker":
            serial[family] = (s["pool"] / n, fixed / r["units"])
        print(f"{family:<16} {label:<9} {n:>4} {s['load']:6.1f} {s['audio']:6.2f} {s['features']:6.2f} "
              f"{s['wait']:6.2f} {s['forward']:7.1f} {s['pool']:5.2f} {s['write']:5.2f} {wall:7.1f} "
              f"{100 * s['forward'] / wall:5.1f}% {100 * r['padding']:4.1f}% {1000 * rest:9.1f}ms "
              f"{1000 * fixed / r['units']:8.0f}ms")

    # CPU featurization of 10 s clips per family, CPU and device features
    rng = np.random.default_rng(1)
    clips = [(0.1 * rng.standard_normal(10 * SR)).astype(np.float32) for _ in range(16)]
    pairs = [(c, "a sentence of about the length of a fleurs transcript in english") for c in clips]
    sonar = SonarAdapter.resolve("tiny", tmp / "sonar")
    cost = {}
    for mode in ("cpu", "device"):
        cost[("seamless_m4t_v2", mode)] = featurize_cost(SeamlessM4Tv2Adapter(str(seamless), {}, "cpu",
                                                                              features=mode), clips)
        cost[("sonar", mode)] = featurize_cost(SonarAdapter(sonar, {}, "cpu", features=mode), clips)
        cost[("salmonn", mode)] = featurize_cost(SalmonnAdapter(tiny_paths(salmonn), {}, "cpu", features=mode),
                                                 pairs)
    serial["sonar"] = serial["seamless_m4t_v2"]  # the same host work per sentence (pool, write, audio)
    n = args.shard_sentences
    print(f"\nprojected for one H100/H200 at {GPU / 1e12:.0f} TFLOP/s with {args.cpus} CPUs "
          f"({args.cpus - 1} featurizing), 10 s clips, {n} sentences per shard:")
    print(f"{'model':<16} {'GPU ms':>7} {'features':<9} {'CPU ms':>7} {'/worker':>8} {'serial ms':>9} {'busy':>6}")
    lowest = {}
    for family in ("seamless_m4t_v2", "sonar", "salmonn"):
        gpu = FLOPS[family] / GPU
        per_sentence, fixed = serial[family]
        for mode in ("cpu", "device"):
            feat = cost[(family, mode)] / (args.cpus - 1)
            first = 8 * cost[(family, mode)]  # a unit's first batch cannot overlap a forward pass
            overhead = per_sentence + (fixed + first) / n
            busy = gpu / (max(gpu, feat) + overhead)
            lowest[family] = max(lowest.get(family, 0.0), busy)
            print(f"{family:<16} {1000 * gpu:7.2f} {mode:<9} {1000 * cost[(family, mode)]:7.1f} {1000 * feat:8.2f} "
                  f"{1000 * overhead:9.2f} {100 * busy:5.1f}%")
    if torch.cuda.is_available():
        print("\na GPU is visible: run this bench's models at real size on it for measured rates (not done here)")
    else:
        print("\nno GPU here: the GPU rows are projections only")
    print(f"projected GPU busy share: {100 * min(lowest.values()):.0f}%")


STUDY_SENTENCES = 30 * 251  # per modality: the study's languages x N


def gpu_main(args) -> None:
    """Real-size SeamlessM4T v2 encoders on the GPU, through crossrep's extraction (see the module docstring)."""
    import torch

    from crossrep.models.seamless import build_tiny as seamless_tiny

    if not torch.cuda.is_available():
        raise SystemExit("--gpu: torch sees no CUDA GPU here")
    langs = LANGS[:args.languages]
    tmp = Path(tempfile.mkdtemp(prefix="crossrep-bench-"))
    root = fleurs_like(tmp / "data", langs, args.sentences + 8)
    start = time.perf_counter()
    ckpt = seamless_tiny(tmp / "seamless", languages=langs, hidden=1024, layers=24, heads=16, ffn=4096,
                         text_ffn=8192)
    print(f"{torch.cuda.get_device_name()}: SeamlessM4T v2 encoders at real size built in "
          f"{time.perf_counter() - start:.0f} s; {len(langs)} languages x {args.sentences} FLEURS-length clips")
    model = {"name": "seamless", "adapter": "seamless_m4t_v2", "checkpoint": str(ckpt)}
    settings = dict(device="cuda", dtype="bfloat16", batch_size=16, chunk_size=64, batch_seconds=240, threads=4,
                    feature_workers=4)
    print(f"{'features':<9} {'modality':<8} {'sent':>4} {'load':>5} {'audio':>6} {'feats':>6} {'wait':>6} "
          f"{'fwd':>6} {'pool':>5} {'write':>5} {'wall':>6} {'busy':>6} {'pad':>5} {'sent/s':>7} "
          f"{'fwd ms/sent':>11} {'study min':>9}")
    for features in ("cpu", "device"):
        got = extract(job(tmp / "runs" / f"gpu-{features}", root, langs, args.sentences, model,
                          features=features, **settings))
        for modality, r in got.items():
            s, n, wall = r["seconds"], r["sentences"], r["wall"]
            assert r["device"].startswith("cuda"), r["device"]
            rate = n / (wall - s["load"])  # a unit's model load is amortised over shards_per_task shards
            print(f"{features:<9} {modality:<8} {n:>4} {s['load']:5.1f} {s['audio']:6.2f} {s['features']:6.2f} "
                  f"{s['wait']:6.2f} {s['forward']:6.2f} {s['pool']:5.2f} {s['write']:5.2f} {wall:6.1f} "
                  f"{100 * s['forward'] / wall:5.1f}% {100 * r['padding']:4.1f}% {rate:7.1f} "
                  f"{1000 * s['forward'] / n:11.2f} {STUDY_SENTENCES / rate / 60:9.1f}")
    print("sent/s and the study's minutes leave out model loading (once per task of shards_per_task shards)")


if __name__ == "__main__":
    main()
