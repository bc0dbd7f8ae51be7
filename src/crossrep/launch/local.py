"""Local backend: submitit's LocalExecutor (one subprocess per task) or DebugExecutor (in this process)."""

from __future__ import annotations

import sys

import submitit

from ..extract import run_task, write_resolved
from ..stages import aggregate_stage, reduce_stage
from ..store import ActivationStore
from .base import Launcher, collect, follow


class LocalLauncher(Launcher):
    def __init__(self, job, debug: bool = False):
        super().__init__(job)
        self.debug = debug

    def executor(self, name: str) -> submitit.AutoExecutor:
        ex = submitit.AutoExecutor(folder=str(self.logs), cluster="debug" if self.debug else "local")
        ex.update_parameters(timeout_min=self.job.executor.timeout_min, name=f"crossrep-{self.job.name}-{name}")
        return ex

    def run(self, stages=("extract", "reduce", "aggregate"), wait: bool = True) -> None:
        job_file = None
        if "extract" in stages:
            job_file, store, todo = self.prepare()
            if todo:
                self.extract(job_file, todo, store)
        job_file = job_file or str(write_resolved(self.job))
        for stage, fn in (("reduce", reduce_stage), ("aggregate", aggregate_stage)):
            if stage in stages:
                print(f"crossrep: stage {stage} ...", file=sys.stderr)
                collect([self.executor(stage).submit(fn, job_file)], f"stage {stage}")

    def extract(self, job_file: str, indices: list[int], store: ActivationStore) -> None:
        workers = 1 if self.debug else min(self.job.executor.workers, len(indices))
        groups = [indices[w::workers] for w in range(workers)]
        ex = self.executor("extract")
        jobs = ex.map_array(run_task, [job_file] * workers, groups)
        if self.debug:
            collect(jobs, "stage extract")
            return
        follow(store, self.job, indices, lambda: not all(j.done() for j in jobs))
        collect(jobs, "stage extract")
