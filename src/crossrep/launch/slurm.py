"""Slurm backend through submitit: an extraction array (one shard per GPU task), then the reduction with an
`afterok` dependency on every array, then the aggregation after the reduction. Submits and returns; `wait`
follows progress. Each submission is recorded in `<out>/slurm.json` for `crossrep status`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import submitit

from ..config import load_job
from ..errors import CrossrepError
from ..extract import run_task
from ..lock import folder_lock
from ..plan import units
from ..profile import SlurmProfile, StageResources, load_profile
from ..sacct import ACTIVE, sacct_states
from ..stages import aggregate_stage, reduce_stage
from ..store import ActivationStore, portable
from .base import Launcher, collect, follow, report_shards, task_errors
from .record import RECORD, read_record, shard_tasks
def max_array_size() -> int:
    """The cluster's MaxArraySize (tasks per array job), from `scontrol show config`."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CrossrepError(f"cannot run scontrol to read MaxArraySize: {exc}") from None
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
    return int(match.group(1)) if match else 1001


class ExtractTask:
    """A Slurm array element: its shards, split over the tasks of a packed allocation (one per GPU).

    On preemption or time limit submitit calls `checkpoint`, which requeues the same call; the shards then
    resume from their last complete chunk.
    """

    def __call__(self, job_file: str, indices: list[int]) -> dict:
        import torch

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # whole units per task: a joint unit's two shards stay with one writer
            mine = units(load_job(job_file), indices)[env.local_rank::env.num_tasks]
            indices = [i for unit in mine for i in unit]
            if torch.cuda.device_count() > 1:
                torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
        return run_task(job_file, indices)

    def checkpoint(self, *args, **kwargs):
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


class OfflineSlurmExecutor(submitit.SlurmExecutor):
    """Builds sbatch scripts on a machine without Slurm (`--dry-run` on a laptop); never submits."""

    @classmethod
    def affinity(cls) -> int:
        return 1

    def _internal_process_submissions(self, *args, **kwargs):
        raise CrossrepError("a dry-run executor does not submit")


class SlurmLauncher(Launcher):
    def __init__(self, job, profile: SlurmProfile | None = None):
        super().__init__(job)
        self.profile = profile or load_profile(job.executor.cluster)

    def executor(self, stage: str, res: StageResources, tasks_per_node: int = 1,
                 offline: bool = False) -> submitit.SlurmExecutor:
        """The submitit executor of a stage; `offline` builds one where Slurm is not installed (dry runs)."""
        p = self.profile
        cls = OfflineSlurmExecutor if offline else submitit.SlurmExecutor
        ex = cls(folder=str(self.logs / "%j"))
        extra = dict(p.additional)
        extra["kill-on-invalid-dep"] = "yes"
        if p.qos:
            extra["qos"] = p.qos
        generic = {"name": f"crossrep-{self.job.name}-{stage}", "timeout_min": res.time_min, "nodes": 1,
                   "tasks_per_node": tasks_per_node, "cpus_per_task": res.cpus, "mem_gb": res.mem_gb * tasks_per_node}
        if res.gpus:
            generic["gpus_per_node"] = res.gpus * tasks_per_node
        ex.update_parameters(**ex._convert_parameters(generic), partition=res.partition or p.partition,
                             array_parallelism=p.array_parallelism, additional_parameters=extra,
                             setup=list(p.setup) + ["export HF_HUB_OFFLINE=1"])
        if p.account:
            ex.update_parameters(account=p.account)
        return ex

    def run(self, stages=("extract", "reduce", "aggregate"), wait: bool = False) -> dict:
        lock = folder_lock(self.job.out, f"crossrep run {self.job.name} --executor slurm")
        try:
            job_file, store, todo = self.prepare(verify="extract" in stages)
            self.refuse_active(todo)
            record = self.submit(job_file, todo, stages)
            # the lock now lasts as long as the submitted jobs: stale once they have all ended
            lock.add_jobs(sorted({t["id"].split("_")[0] for t in record["extract"]})
                          + [record[s]["id"] for s in ("reduce", "aggregate") if record[s]])
        finally:
            lock.release()
        self.save(record)
        self.announce(record)
        if wait:
            self.wait(store, todo, record)
        return record

    def submit(self, job_file: str, todo: list[int], stages) -> dict:
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "extract": [], "reduce": None, "aggregate": None}
        self._jobs = []
        after: list[str] = []
        if "extract" in stages and todo:
            k = self.profile.shards_per_node  # tasks (GPUs) per allocation
            m = self.job.extract.shards_per_task  # units per task, one model load
            work = units(self.job, todo)  # an audio LLM's text and speech shard of a language stay together
            groups = [[i for unit in work[j:j + k * m] for i in unit] for j in range(0, len(work), k * m)]
            limit = max_array_size()
            ex = self.executor("extract", self.profile.extract, tasks_per_node=min(k, len(work)))
            for start in range(0, len(groups), limit):
                part = groups[start:start + limit]
                submitted = ex.map_array(ExtractTask(), [job_file] * len(part), part)
                self._jobs += submitted
                after.append(submitted[0].job_id.split("_")[0])
                record["extract"] += [{"id": j.job_id, "shards": g, "log": str(j.paths.stderr)}
                                      for j, g in zip(submitted, part)]
        for stage, fn in (("reduce", reduce_stage), ("aggregate", aggregate_stage)):
            if stage not in stages:
                continue
            ex = self.executor(stage, getattr(self.profile, stage))
            if after:
                ex.update_parameters(dependency="afterok:" + ":".join(after))
            submitted = ex.submit(fn, job_file)
            self._jobs.append(submitted)
            record[stage] = {"id": submitted.job_id, "log": str(submitted.paths.stderr)}
            after = [submitted.job_id]
        return record

    def preview(self, indices: list[int]) -> str:
        """The sbatch scripts `run` would submit for the shards `indices`, without submitting anything."""
        from submitit.slurm.slurm import _make_sbatch_string

        k, m = self.profile.shards_per_node, self.job.extract.shards_per_task
        n_shards, n_units = len(indices), len(units(self.job, indices))
        tasks = -(-n_units // (k * m))
        parts = []
        for stage, res, per_node, count in (("extract", self.profile.extract, min(k, n_units), tasks),
                                            ("reduce", self.profile.reduce, 1, None),
                                            ("aggregate", self.profile.aggregate, 1, None)):
            ex = self.executor(stage, res, tasks_per_node=per_node, offline=True)
            if stage != "extract":
                ex.update_parameters(dependency=f"afterok:<{'extract' if stage == 'reduce' else 'reduce'} job id>")
            command = f"{sys.executable} -u -m submitit.core._submit {ex.folder}"
            units_note = f" ({n_units} units: an audio LLM's two shards of a language run together)" \
                if n_units != n_shards else ""
            if m > 1:
                units_note += f", {m} units per task"
            parts.append(f"# --- {stage}" + (f": {count} array tasks for {n_shards} shards{units_note}" if count else "")
                         + "\n"
                         + _make_sbatch_string(command=command, folder=ex.folder, map_count=count, **ex.parameters))
        return "\n".join(parts)

    def refuse_active(self, todo: list[int]) -> None:
        """Never two writers on one shard: refuse while an earlier task of a shard to submit is still active."""
        tasks = shard_tasks(self.job.out)
        ids = sorted({tasks[i]["task"] for i in todo if i in tasks})
        states = sacct_states(ids)
        busy = [(i, tasks[i]["task"], states[tasks[i]["task"]]) for i in todo
                if i in tasks and states.get(tasks[i]["task"]) in ACTIVE]
        if busy:
            listed = ", ".join(f"shard {i} in {t} ({s})" for i, t, s in busy[:8])
            raise CrossrepError(f"{len(busy)} shards still have an active Slurm task: {listed}; wait for them "
                                f"or scancel them, then resume")

    def save(self, record: dict) -> None:
        data = read_record(self.job.out)
        data["submissions"].append(record)
        path = self.job.out / RECORD
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(portable(data, self.job.out), indent=1))
        tmp.replace(path)

    def announce(self, record: dict) -> None:
        arrays = sorted({t["id"].split("_")[0] for t in record["extract"]})
        lines = []
        if arrays:
            lines.append(f"extract: array job{'s' if len(arrays) > 1 else ''} {', '.join(arrays)} "
                         f"({len(record['extract'])} tasks, at most {self.profile.array_parallelism} at once)")
        for stage in ("reduce", "aggregate"):
            if record[stage]:
                lines.append(f"{stage}: job {record[stage]['id']}")
        lines.append(f"follow: crossrep status {self.job.out / 'job.yaml'}  |  squeue -u $USER  |  "
                     f"logs in {self.logs}")
        print("crossrep: submitted\n  " + "\n  ".join(lines), file=sys.stderr)

    def wait(self, store: ActivationStore, todo: list[int], record: dict) -> None:
        n = len(record["extract"])
        extract_jobs, jobs = self._jobs[:n], self._jobs[n:]
        if extract_jobs:
            follow(store, self.job, todo, lambda: not all(j.done() for j in extract_jobs), interval=2.0)
            errors = task_errors(extract_jobs)
            report_shards(store, self.job, todo, {i: (t["log"], errors.get(k)) for k, t in enumerate(record["extract"])
                                                  for i in t["shards"]})
        collect(jobs, "Slurm jobs")
