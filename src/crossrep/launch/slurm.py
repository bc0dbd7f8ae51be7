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
from pathlib import Path

import submitit

from ..errors import CrossrepError
from ..extract import ExtractTask
from ..stages import aggregate_stage, reduce_stage
from ..store import ActivationStore
from .base import Launcher, collect, follow
from .profile import SlurmProfile, StageResources, load_profile

RECORD = "slurm.json"
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED",
          "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


def max_array_size() -> int:
    """The cluster's MaxArraySize (tasks per array job), from `scontrol show config`."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CrossrepError(f"cannot run scontrol to read MaxArraySize: {exc}") from None
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
    return int(match.group(1)) if match else 1001


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    """State of each job or array task id (e.g. '12_3'), from sacct; {} where sacct is unavailable."""
    if not job_ids:
        return {}
    try:
        out = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(job_ids)],
                             capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    states = {}
    for line in out.splitlines():
        jid, _, state = line.partition("|")
        states[jid] = state.split()[0] if state else "UNKNOWN"
        match = re.fullmatch(r"(\d+)_\[(\d+)-(\d+)(?:%\d+)?\]", jid)  # pending array tasks listed as a range
        if match:
            for k in range(int(match.group(2)), int(match.group(3)) + 1):
                states.setdefault(f"{match.group(1)}_{k}", states[jid])
    return states


def read_record(out: Path) -> dict:
    path = Path(out) / RECORD
    return json.loads(path.read_text()) if path.is_file() else {"submissions": []}


def shard_tasks(out: Path) -> dict[int, dict]:
    """For each shard index, its latest Slurm task: {'task': '12_3', 'log': path}."""
    tasks: dict[int, dict] = {}
    for sub in read_record(out)["submissions"]:
        for task in sub["extract"]:
            for i in task["shards"]:
                tasks[i] = {"task": task["id"], "log": task["log"]}
    return tasks


class SlurmLauncher(Launcher):
    def __init__(self, job, profile: SlurmProfile | None = None):
        super().__init__(job)
        self.profile = profile or load_profile(job.executor.cluster)

    def executor(self, stage: str, res: StageResources, tasks_per_node: int = 1) -> submitit.AutoExecutor:
        p = self.profile
        ex = submitit.AutoExecutor(folder=str(self.logs / "%j"), cluster="slurm")
        extra = dict(p.additional)
        extra["kill-on-invalid-dep"] = "yes"
        if p.qos:
            extra["qos"] = p.qos
        ex.update_parameters(
            name=f"crossrep-{self.job.name}-{stage}", timeout_min=res.time_min, nodes=1,
            tasks_per_node=tasks_per_node, cpus_per_task=res.cpus,
            mem_gb=res.mem_gb * tasks_per_node, slurm_partition=res.partition or p.partition,
            slurm_array_parallelism=p.array_parallelism, slurm_additional_parameters=extra,
            slurm_setup=list(p.setup) + ["export HF_HUB_OFFLINE=1"],
        )
        if res.gpus:
            ex.update_parameters(gpus_per_node=res.gpus * tasks_per_node)
        if p.account:
            ex.update_parameters(slurm_account=p.account)
        return ex

    def run(self, stages=("extract", "reduce", "aggregate"), wait: bool = False) -> dict:
        job_file, store, todo = self.prepare()
        self.refuse_active(todo)
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "extract": [], "reduce": None, "aggregate": None}
        after: list[str] = []
        extract_jobs, jobs = [], []
        if "extract" in stages and todo:
            k = self.profile.shards_per_node
            groups = [todo[i:i + k] for i in range(0, len(todo), k)]
            limit = max_array_size()
            ex = self.executor("extract", self.profile.extract, tasks_per_node=min(k, len(todo)))
            for start in range(0, len(groups), limit):
                part = groups[start:start + limit]
                submitted = ex.map_array(ExtractTask(), [job_file] * len(part), part)
                extract_jobs += submitted
                after.append(submitted[0].job_id.split("_")[0])
                record["extract"] += [{"id": j.job_id, "shards": g, "log": str(j.paths.stderr)}
                                      for j, g in zip(submitted, part)]
        for stage, fn in (("reduce", reduce_stage), ("aggregate", aggregate_stage)):
            if stage not in stages:
                continue
            ex = self.executor(stage, getattr(self.profile, stage))
            if after:
                ex.update_parameters(slurm_dependency="afterok:" + ":".join(after))
            submitted = ex.submit(fn, job_file)
            jobs.append(submitted)
            record[stage] = {"id": submitted.job_id, "log": str(submitted.paths.stderr)}
            after = [submitted.job_id]
        self.save(record)
        self.announce(record)
        if wait:
            self.wait(store, todo, extract_jobs, jobs)
        return record

    def preview(self, n_shards: int) -> str:
        """The sbatch scripts `run` would submit for `n_shards` shards, without submitting anything."""
        from submitit.slurm.slurm import _make_sbatch_string

        k = self.profile.shards_per_node
        tasks = -(-n_shards // k)
        parts = []
        for stage, res, per_node, count in (("extract", self.profile.extract, min(k, n_shards), tasks),
                                            ("reduce", self.profile.reduce, 1, None),
                                            ("aggregate", self.profile.aggregate, 1, None)):
            ex = self.executor(stage, res, tasks_per_node=per_node)._executor
            if stage != "extract":
                ex.update_parameters(dependency=f"afterok:<{'extract' if stage == 'reduce' else 'reduce'} job id>")
            command = f"{sys.executable} -u -m submitit.core._submit {ex.folder}"
            parts.append(f"# --- {stage}" + (f": {count} array tasks for {n_shards} shards" if count else "") + "\n"
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
        tmp.write_text(json.dumps(data, indent=1))
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

    def wait(self, store: ActivationStore, todo: list[int], extract_jobs: list, jobs: list) -> None:
        if extract_jobs:
            follow(store, self.job, todo, lambda: not all(j.done() for j in extract_jobs), interval=2.0)
        collect(extract_jobs + jobs, "Slurm jobs")
