"""The stages as plain functions of a resolved job file, so any executor can run them anywhere. Each takes the
output folder's lock (held already, and so passed through, when it runs as part of a `crossrep run`)."""

from __future__ import annotations

from . import progress
from .config import load_job
from .lock import folder_lock


def reduce_stage(job_file: str) -> str:
    from . import results

    job = load_job(job_file)
    with folder_lock(job.out, f"crossrep reduce {job.name}"):
        progress.report_to(job.out)
        return str(results.write(job))


def report_stage(job_file: str) -> str:
    from .analysis import report

    job = load_job(job_file)
    with folder_lock(job.out, f"crossrep report {job.name}"):
        return str(report.run(job))


def aggregate_stage(job_file: str) -> str:
    from .analysis import aggregate

    job = load_job(job_file)
    with folder_lock(job.out, f"crossrep aggregate {job.name}"):
        progress.report_to(job.out)
        return str(aggregate.run(job))
