"""A small extracted store for the analysis tests: the tiny SeamlessM4T v2 on the demo data, extracted in
process (plan, then every shard through the debug path), without reduction or figures."""

from __future__ import annotations

from pathlib import Path

import yaml

from conftest import job_dict


def extracted_job(tmp: Path, demo_root: Path, tiny: Path, analysis: dict | None = None, **changes):
    """The job (4 languages, 12 cross-lingual sentences) with its activation store written under `tmp`."""
    from crossrep.config import load_job
    from crossrep.extract import run_all
    from crossrep.plan import create_store

    spec = job_dict(tmp / "out", demo_root, tiny, **{"executor.kind": "debug", **changes})
    if analysis is not None:
        spec["analysis"] = analysis
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    job = load_job(path)
    create_store(job, progress=False)
    run_all(job, progress=False)
    return job
