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


def render(job: Job, show_all: bool = False, verify: bool = False) -> tuple[str, bool]:
    """The status table as text, and whether every shard is complete (and, with `verify`, undamaged)."""
    from .launch.slurm import shard_tasks
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

