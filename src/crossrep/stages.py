"""The three stages as plain functions of a resolved job file, so any executor can run them anywhere."""

from __future__ import annotations

from .config import load_job


def reduce_stage(job_file: str) -> str:
    from . import reduce

    return str(reduce.run(load_job(job_file)))


def aggregate_stage(job_file: str) -> str:
    from .analysis import figures

    return str(figures.run(load_job(job_file)))
