"""Launchers run the stages of a job on an executor: `local` (submitit subprocesses) or `debug` (in process).

One folder per backend behind `Launcher`; the Slurm backend plugs in beside `local`.
"""

from __future__ import annotations

from ..config import Job
from .base import STAGES, Launcher


def launcher(job: Job, kind: str | None = None) -> Launcher:
    kind = kind or job.executor.kind
    if kind in ("local", "debug"):
        from .local import LocalLauncher

        return LocalLauncher(job, debug=kind == "debug")
    if kind == "slurm":
        from .slurm import SlurmLauncher

        return SlurmLauncher(job)
    raise ValueError(f"unknown executor {kind!r}")


__all__ = ["STAGES", "Launcher", "launcher"]
