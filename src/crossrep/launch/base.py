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
    """Runs stages in order; each backend decides where the work runs and how to wait for it."""

    def __init__(self, job: Job):
        self.job = job
        self.logs = job.out / "logs"

    def run(self, stages: tuple[str, ...] = STAGES) -> None:
        job_file = str(write_resolved(self.job))
        for stage in STAGES:
            if stage not in stages:
                continue
            print(f"crossrep: stage {stage} ...", file=sys.stderr)
            if stage == "extract":
                store = create_store(self.job)
                todo = [st.shard.index for st in (store.state(s) for s in shards(self.job)) if not st.complete]
                print(f"crossrep: {len(todo)} of {len(shards(self.job))} shards to extract", file=sys.stderr)
                if todo:
                    self.extract(job_file, todo, store)
            else:
                self.single(stage, job_file)

    @abstractmethod
    def extract(self, job_file: str, indices: list[int], store: ActivationStore) -> None:
        """Run the given shards and return when all have ended; raise StageFailed naming failures."""

    @abstractmethod
    def single(self, stage: str, job_file: str) -> None:
        """Run the reduce or aggregate stage and return when it has ended."""


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
