"""Where the reduction's Dask graph runs (`similarity.scheduler`): threads in this process, a
`distributed.LocalCluster`, Dask workers submitted as Slurm jobs (dask_jobqueue), or one worker per GPU
(dask_cuda). The graph and its results are the same whichever runs it."""

from __future__ import annotations

import contextlib
import sys

from . import progress
from .config import Job
from .errors import ConfigError


@contextlib.contextmanager
def scheduler(job: Job):
    """Yields `run(graph, keys, label) -> results` (a plain task dict and a list of its keys) for the job's
    scheduler, and shuts it down afterwards. Each run shows a progress bar (tasks done of all tasks on threads;
    results done of those asked for on a cluster) and prints one line with its time."""
    kind, workers = job.similarity.scheduler, job.similarity.workers
    if kind == "threads":
        from dask.callbacks import Callback
        from dask.threaded import get

        def run(graph, keys, label):
            with progress.stage(f"{label}: {len(graph)} tasks"), progress.bar(len(graph), label) as bar, \
                    Callback(posttask=lambda *_: bar.update()):
                return get(graph, keys, num_workers=workers)

        yield run
        return
    from distributed import Client, as_completed

    with _cluster(job, kind, workers) as cluster, Client(cluster) as client:
        print(f"crossrep: Dask {kind} cluster, dashboard {client.dashboard_link}", file=sys.stderr)
        if kind == "slurm":
            client.wait_for_workers(1, timeout=job.executor.timeout_min * 60)

        def run(graph, keys, label):
            with progress.stage(f"{label}: {len(graph)} tasks"), progress.bar(len(keys), label, "result") as bar:
                futures = client.get(graph, keys, sync=False)
                for _ in as_completed(futures):
                    bar.update()
                return client.gather(futures)

        yield run


def _cluster(job: Job, kind: str, workers: int):
    if kind == "local":
        from distributed import LocalCluster

        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    if kind == "cuda":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise ConfigError("similarity.scheduler: cuda needs dask_cuda (pip install dask-cuda)") from None
        return LocalCUDACluster(dashboard_address=None)
    if kind == "slurm":
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise ConfigError("similarity.scheduler: slurm needs dask_jobqueue (pip install dask-jobqueue)") from None
        from .profile import load_profile

        if not job.executor.cluster:
            raise ConfigError("similarity.scheduler: slurm takes its resources from executor.cluster (a profile)")
        p = load_profile(job.executor.cluster)
        res = p.reduce
        cluster = SLURMCluster(
            cores=res.cpus, processes=1, memory=f"{res.mem_gb}GB", queue=res.partition or p.partition,
            account=p.account, walltime=f"{res.time_min // 60:02d}:{res.time_min % 60:02d}:00",
            job_script_prologue=list(p.setup), log_directory=str(job.out / "logs" / "dask"),
            job_name=f"crossrep-{job.name}-dask", dashboard_address=None,
        )
        cluster.scale(jobs=workers)
        return cluster
    raise ConfigError(f"similarity.scheduler: unknown {kind!r}")
