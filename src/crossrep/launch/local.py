"""Local backend: submitit's LocalExecutor (one subprocess per task), or `debug`: every stage in this process,
with no debugger, so a failure prints its message and the command exits non-zero."""

from __future__ import annotations

import sys
import time

import submitit

from ..extract import ShardFailures, run_task
from ..lock import folder_lock
from ..plan import shards
from ..stages import aggregate_stage, reduce_stage
from ..store import ActivationStore
from .base import STAGES, Launcher, collect, follow, report_shards, task_errors


class LocalLauncher(Launcher):
    def __init__(self, job, debug: bool = False):
        super().__init__(job)
        self.debug = debug

    def executor(self, name: str) -> submitit.AutoExecutor:
        ex = submitit.AutoExecutor(folder=str(self.logs), cluster="local")
        ex.update_parameters(timeout_min=self.job.executor.timeout_min, name=f"crossrep-{self.job.name}-{name}")
        return ex

    def run(self, stages=STAGES, wait: bool = True) -> None:
        kind = "debug" if self.debug else "local"
        with folder_lock(self.job.out, f"crossrep run {self.job.name} --executor {kind}"):
            job_file, store, todo = self.prepare()
            if "extract" in stages and todo:
                self.extract(job_file, todo, store)
            for stage, fn in (("reduce", reduce_stage), ("aggregate", aggregate_stage)):
                if stage in stages:
                    print(f"crossrep: stage {stage} ...", file=sys.stderr)
                    if self.debug:
                        fn(job_file)
                    else:
                        self.wait([self.executor(stage).submit(fn, job_file)], f"stage {stage}")

    def extract(self, job_file: str, indices: list[int], store: ActivationStore) -> None:
        if self.debug:
            try:
                run_task(job_file, indices)
                errors = {}
            except ShardFailures as exc:
                errors = dict(exc.failures)
            keys = [str(k) for k in shards(self.job)]
            report_shards(store, self.job, indices, {i: ("(printed above)", errors.get(keys[i])) for i in indices})
            return
        workers = min(self.job.executor.workers, len(indices))
        groups = [indices[w::workers] for w in range(workers)]
        jobs = self.executor("extract").map_array(run_task, [job_file] * workers, groups)
        try:
            follow(store, self.job, indices, lambda: not all(j.done() for j in jobs))
        except KeyboardInterrupt:
            stop(jobs)
            raise
        errors = task_errors(jobs)
        where = {i: (str(j.paths.stderr), errors.get(k)) for k, (j, g) in enumerate(zip(jobs, groups)) for i in g}
        report_shards(store, self.job, indices, where)

    def wait(self, jobs: list, stage: str) -> None:
        try:
            while not all(j.done() for j in jobs):
                time.sleep(0.2)
        except KeyboardInterrupt:
            stop(jobs)
            raise
        collect(jobs, stage)


def stop(jobs: list, grace: float = 30.0) -> None:
    """Interrupt local tasks and wait until their processes have exited, so nothing writes after we return."""
    for j in jobs:
        j.cancel(check=False)
    deadline = time.time() + grace
    for j in jobs:
        proc = getattr(j, "_process", None)  # submitit's LocalJob keeps its Popen here
        if proc is None:
            continue
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except Exception:
            proc.kill()
            proc.wait()
