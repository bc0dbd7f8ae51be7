"""`crossrep status`: per shard, complete, partial (chunks done of total), failed (with its error) or missing;
with the Slurm state and log of its latest task where the job was submitted to Slurm; with `verify`, every
chunk recorded as done is read back and each damaged one is named and marked for recomputation."""

from __future__ import annotations

import time
from collections import Counter

from .config import Job
from .lock import FOLDER_LOCK, Lock, LockedError, folder_lock
from .plan import shards
from .store import FILENAME, ActivationStore
from .timing import STAGES


def render(job: Job, show_all: bool = False, verify: bool = False) -> tuple[str, bool]:
    """The status table as text, and whether every shard is complete (and, with `verify`, undamaged)."""
    from .launch.record import shard_tasks
    from .sacct import sacct_states

    table = shards(job)
    path = job.out / FILENAME
    if not path.exists():
        return (f"{path}: not created yet; all {len(table)} shards missing "
                f"(start with `crossrep run` or `crossrep plan`)"), False
    store = ActivationStore(job.out)  # a damaged root raises, saying what to do
    lines = []
    damaged = []
    if verify:
        start = time.time()
        damaged = store.verify()
        took = time.time() - start
        marked = ""
        if damaged:
            try:
                with folder_lock(job.out, f"crossrep status --verify {job.name}"):
                    ActivationStore(job.out, mode="r+").forget(damaged)
                marked = "; marked not done: `crossrep run` (or `resume`) recomputes exactly these"
            except LockedError as exc:
                marked = f"; not marked, {exc}"
        lines.append(f"verified {sum(len(store.state(k).chunks_done) for k in table)} chunks in {took:.1f} s: "
                     f"{len(damaged)} damaged{marked}")
        lines += [f"  damaged: {d}" for d in damaged]
    states = [store.state(s) for s in table]
    tasks = shard_tasks(job.out)
    slurm = sacct_states(sorted({t["task"] for t in tasks.values()}))
    counts = Counter(st.status for st in states)
    lines.insert(0, f"{path}: " + ", ".join(f"{counts[k]} {k}" for k in ("complete", "partial", "failed", "missing")
                                           if counts[k]))
    holder = Lock(job.out / FOLDER_LOCK, "").read()
    if holder is not None:
        lines.insert(1, f"lock: {holder.describe()}")
    shown = [(i, st) for i, st in enumerate(states) if show_all or st.status != "complete"]
    if shown:
        lines.append(f"{'shard':>5}  {'model/modality/lang':<32} {'status':<9} {'chunks':<7} slurm")
    for i, st in shown:
        task = tasks.get(i)
        where = f"{task['task']} {slurm.get(task['task'], 'UNKNOWN')}" if task else "-"
        line = f"{i:>5}  {str(st.key):<32} {st.status:<9} {f'{len(st.chunks_done)}/{st.n_chunks}':<7} {where}"
        if st.error:
            line += f"\n       error: {st.error}"
        if task and st.status != "complete":
            line += f"\n       log: {task['log']}"
        lines.append(line)
    return "\n".join(lines), counts["complete"] == len(table) and not damaged



def render_timing(job: Job) -> str:
    """Seconds per extraction stage for every shard with a timing record, per model and in all, with the share
    of the unit's wall time (model loading aside) the forward pass ran (busy) and the padding share. Stages
    overlap: features and audio decoding run in the DataLoader workers, writes in a writer thread."""
    path = job.out / FILENAME
    if not path.exists():
        return f"{path}: not created yet: no timing"
    store = ActivationStore(job.out)
    rows = [(k, store.timing(k)) for k in shards(job)]
    rows = [(k, t) for k, t in rows if t]
    if not rows:
        return f"{path}: no shard has a timing record yet (written when a shard's extraction finishes)"
    head = f"{'model/modality/lang':<32} {'sent':>5} " + " ".join(f"{s:>8}" for s in STAGES) + \
        f" {'wall':>8} {'busy':>6} {'padding':>7} {'workers':>7}"
    lines = ["seconds per stage (a joint unit's time is split between its two shards; stages overlap, wall is "
             "the unit's own)", head]
    totals: dict[str, dict[str, float]] = {}

    def line(name, sentences, seconds, padding, workers, wall: float) -> str:
        busy = f"{100 * seconds['forward'] / wall:5.1f}%" if wall else "     -"
        return (f"{name:<32} {sentences:>5} " + " ".join(f"{seconds[s]:8.2f}" for s in STAGES)
                + f" {wall:8.2f} {busy:>6} {padding:>7} {workers:>7}")

    for key, t in rows:
        seconds = {s: float(t["seconds"].get(s, 0.0)) for s in STAGES}
        lines.append(line(str(key), t["sentences"], seconds, f"{100 * t['padding']:.1f}%", t["feature_workers"],
                          float(t["wall"])))
        for name in (key.model, "all"):
            acc = totals.setdefault(name, dict.fromkeys(STAGES, 0.0) | {"sentences": 0, "wall": 0.0})
            for s in STAGES:
                acc[s] += seconds[s]
            acc["sentences"] += t["sentences"]
            acc["wall"] += float(t["wall"])
    for name, acc in sorted(totals.items(), key=lambda item: item[0] == "all"):  # per model, then all
        lines.append(line(f"total {name}", int(acc["sentences"]), {s: acc[s] for s in STAGES}, "", "",
                          acc["wall"]))
    return "\n".join(lines)
