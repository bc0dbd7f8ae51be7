"""Local backend: submitit's LocalExecutor (one subprocess per task), or `debug`: every stage in this process,
with no debugger, so a failure prints its message and the command exits non-zero."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import submitit

from .. import progress
from ..extract import ShardFailures, run_task
from ..lock import alive, folder_lock
from ..plan import shards, units
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
            job_file, store, todo = self.prepare(verify="extract" in stages)
            if "extract" in stages and todo:
                self.extract(job_file, todo, store)
            for stage, fn in (("reduce", reduce_stage), ("aggregate", aggregate_stage)):
                if stage in stages:
                    print(f"crossrep: stage {stage} ...", file=sys.stderr)
                    if self.debug:
                        fn(job_file)
                    else:
                        progress.channel(self.job.out).unlink(missing_ok=True)  # an earlier stage's report
                        self.wait([self.executor(stage).submit(fn, job_file)], f"stage {stage}", relay=True)

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
        todo = units(self.job, indices)  # an audio LLM's text and speech shard of a language stay together
        workers = min(self.job.executor.workers, len(todo))
        groups = [[i for unit in todo[w::workers] for i in unit] for w in range(workers)]
        jobs = self.executor("extract").map_array(run_task, [job_file] * workers, groups)
        try:
            follow(store, self.job, indices, lambda: not all(j.done() for j in jobs))
        except KeyboardInterrupt:
            stop(jobs)
            raise
        errors = task_errors(jobs)
        where = {i: (str(j.paths.stderr), errors.get(k)) for k, (j, g) in enumerate(zip(jobs, groups)) for i in g}
        report_shards(store, self.job, indices, where)

    def wait(self, jobs: list, stage: str, relay: bool = False) -> None:
        """Wait for `jobs`; with `relay`, show the progress and stage lines they report (crossrep.progress)."""
        try:
            if relay:
                progress.relay(self.job.out, lambda: not all(j.done() for j in jobs))
            while not all(j.done() for j in jobs):
                time.sleep(0.2)
        except KeyboardInterrupt:
            stop(jobs)
            raise
        collect(jobs, stage)


def stop(jobs: list, grace: float = 30.0) -> None:
    """Interrupt local tasks and wait until their processes, and the workers they started, have exited, so that
    nothing writes after we return."""
    roots = [p.pid for p in (getattr(j, "_process", None) for j in jobs) if p is not None]  # submitit's Popen
    family = set(roots) | descendants(roots)
    for j in jobs:
        j.cancel(check=False)
    deadline = time.time() + grace
    for j in jobs:
        proc = getattr(j, "_process", None)
        if proc is not None:
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except Exception:
                proc.kill()
                proc.wait()
    while time.time() < deadline and any(alive(pid) for pid in family):
        time.sleep(0.05)
    for pid in family:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def descendants(pids: list[int]) -> set[int]:
    """Every process below `pids`, from /proc (empty where there is none)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
