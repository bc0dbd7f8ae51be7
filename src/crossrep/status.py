"""`crossrep status`: per shard, complete, partial (chunks done of total), failed (with its error) or missing;
with the Slurm state and log of its latest task where the job was submitted to Slurm."""

from __future__ import annotations

from collections import Counter

from .config import Job
from .errors import StoreError
from .plan import shards
from .store import FILENAME, ActivationStore


def render(job: Job, show_all: bool = False) -> tuple[str, bool]:
    """The status table as text, and whether every shard is complete."""
    from .launch.slurm import sacct_states, shard_tasks

    table = shards(job)
    try:
        store = ActivationStore(job.out)
        states = [store.state(s) for s in table]
    except StoreError:
        return (f"{job.out / FILENAME}: not created yet; all {len(table)} shards missing "
                f"(start with `crossrep run` or `crossrep plan`)"), False
    tasks = shard_tasks(job.out)
    slurm = sacct_states(sorted({t["task"] for t in tasks.values()}))
    counts = Counter(st.status for st in states)
    lines = [f"{job.out / FILENAME}: " + ", ".join(f"{counts[k]} {k}" for k in
                                                   ("complete", "partial", "failed", "missing") if counts[k])]
    shown = [st for st in states if show_all or st.status != "complete"]
    if shown:
        lines.append(f"{'shard':>5}  {'model/modality/lang':<32} {'status':<9} {'chunks':<7} slurm")
    for st in shown:
        task = tasks.get(st.shard.index)
        where = f"{task['task']} {slurm.get(task['task'], 'UNKNOWN')}" if task else "-"
        line = f"{st.shard.index:>5}  {st.shard.key:<32} {st.status:<9} {f'{len(st.chunks_done)}/{st.n_chunks}':<7} {where}"
        if st.error:
            line += f"\n       error: {st.error}"
        if task and st.status != "complete":
            line += f"\n       log: {task['log']}"
        lines.append(line)
    return "\n".join(lines), counts["complete"] == len(table)
