"""The small interface every backend implements, and the shard bookkeeping they share."""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod

from tqdm import tqdm

from ..config import Job
from ..errors import CrossrepError
from ..plan import create_store, shards, write_resolved
from ..store import ActivationStore

STAGES = ("extract", "reduce", "aggregate")


class StageFailed(CrossrepError):
    pass


class Launcher(ABC):
    """Runs a job's stages: `local`/`debug` one after the other, `slurm` as a chain of dependent jobs."""

    def __init__(self, job: Job):
        self.job = job
        self.logs = job.out / "logs"

    def prepare(self, verify: bool = True, progress: bool = True) -> tuple[str, ActivationStore, list[int]]:
        """Create (or check) the store, then write `<out>/job.yaml`; with `verify` (when extracting: `reduce`
        verifies by itself) check every chunk recorded as done and mark damaged ones for recomputation; return
        the shard indices still to extract."""
        store = create_store(self.job, progress)
        job_file = str(write_resolved(self.job))
        table = shards(self.job)
        damaged = verify_and_forget(store, progress) if verify else []
        todo = [i for i, key in enumerate(table) if not store.state(key).complete]
        print(f"crossrep: {len(todo)} of {len(table)} shards to extract"
              + (f" ({len(damaged)} damaged chunks to recompute)" if damaged else ""), file=sys.stderr)
        return job_file, store, todo

    @abstractmethod
    def run(self, stages: tuple[str, ...] = STAGES, wait: bool = True):
        """Run (or submit) the given stages; with `wait`, return when they have ended."""


def verify_and_forget(store: ActivationStore, progress: bool = True) -> list:
    """Verify every chunk recorded as done; print and mark not done each damaged one."""
    start = time.time()
    damaged = store.verify()
    if damaged:
        store.forget(damaged)
    if progress:
        for d in damaged[:20]:
            print(f"crossrep: damaged: {d}; it will be recomputed", file=sys.stderr)
        if len(damaged) > 20:
            print(f"crossrep: ... and {len(damaged) - 20} more damaged chunks", file=sys.stderr)
        print(f"crossrep: verified {store.path} in {time.time() - start:.1f} s", file=sys.stderr)
    return damaged


def task_errors(jobs: list) -> dict[int, str]:
    """For each failed submitit job (by position), the last line of its error."""
    errors = {}
    for k, j in enumerate(jobs):
        try:
            j.results()
        except Exception as exc:  # submitit wraps the task's exception, or reports the Slurm state
            lines = [ln for ln in str(exc).strip().splitlines() if ln.strip() and not set(ln.strip()) <= set("^~")]
            errors[k] = lines[-1] if lines else type(exc).__name__
    return errors


def collect(jobs: list, stage: str) -> None:
    """Wait for submitit jobs; raise StageFailed listing each failed task's last error line and log."""
    errors = task_errors(jobs)
    if errors:
        lines = [f"{jobs[k].job_id}: {text}\n    log: {jobs[k].paths.stderr}" for k, text in errors.items()]
        raise StageFailed(f"{stage}: {len(errors)} of {len(jobs)} tasks failed:\n  " + "\n  ".join(lines))


def report_shards(store: ActivationStore, job: Job, indices: list[int], where: dict[int, tuple[str, str | None]]):
    """Raise StageFailed naming each shard of `indices` that is not complete, with its own error (from the
    store, else from its task) and its log; `where` maps a shard index to (log, task error)."""
    table = shards(job)
    lines = []
    for i in indices:
        state = store.state(table[i])
        if state.complete:
            continue
        log, task_error = where.get(i, ("-", None))
        reason = state.error or task_error or "did not finish"
        lines.append(f"shard {i} {table[i]}: {reason}\n    log: {log}")
    if lines:
        raise StageFailed(f"extract: {len(lines)} of {len(indices)} shards failed:\n  " + "\n  ".join(lines)
                          + "\nfix the cause, then run the same command again: complete shards are kept")


def follow(store: ActivationStore, job: Job, indices: list[int], running, interval: float = 1.0) -> None:
    """Show chunks done over all chunks of `indices` until `running()` turns false."""
    table = shards(job)
    total = sum(store.state(table[i]).n_chunks for i in indices)
    with tqdm(total=total, desc="extract", unit="chunk", file=sys.stderr) as bar:
        while True:
            alive = running()
            done = sum(len(store.state(table[i]).chunks_done) for i in indices)
            bar.update(done - bar.n)
            if not alive:
                return
            time.sleep(interval)
