"""The small interface every backend implements, and the shard bookkeeping they share."""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod

from tqdm import tqdm

from ..config import Job
from ..errors import CrossrepError
from ..extract import write_resolved
from ..plan import create_store, shards
from ..store import ActivationStore

STAGES = ("extract", "reduce", "aggregate")


class StageFailed(CrossrepError):
    pass


class Launcher(ABC):
    """Runs a job's stages: `local`/`debug` one after the other, `slurm` as a chain of dependent jobs."""

    def __init__(self, job: Job):
        self.job = job
        self.logs = job.out / "logs"

    def prepare(self) -> tuple[str, ActivationStore, list[int]]:
        """Write `<out>/job.yaml`, create (or check) the store; the shard indices still to extract."""
        job_file = str(write_resolved(self.job))
        store = create_store(self.job)
        table = shards(self.job)
        todo = [s.index for s in table if not store.state(s).complete]
        print(f"crossrep: {len(todo)} of {len(table)} shards to extract", file=sys.stderr)
        return job_file, store, todo

    @abstractmethod
    def run(self, stages: tuple[str, ...] = STAGES, wait: bool = True):
        """Run (or submit) the given stages; with `wait`, return when they have ended."""


def collect(jobs: list, stage: str) -> None:
    """Wait for submitit jobs; raise StageFailed listing each failed task's last error line and log."""
    failures = []
    for j in jobs:
        try:
            j.results()
        except Exception as exc:  # submitit wraps the task's exception, or reports the Slurm state
            lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
            failures.append(f"{j.job_id}: {lines[-1] if lines else type(exc).__name__} (log: {j.paths.stderr})")
    if failures:
        raise StageFailed(f"{stage}: {len(failures)} of {len(jobs)} tasks failed:\n  " + "\n  ".join(failures))


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
