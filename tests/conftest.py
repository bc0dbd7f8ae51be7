"""Shared fixtures: a small demo FLEURS copy, a tiny random SeamlessM4T v2, and job files built on them."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from helpers import REPO  # noqa: E402  (tests/ is on the path from here on)
SHARED = REPO.parent / "shared" / "data"
LANGS = ["eng", "deu", "fra", "khm"]  # khm has no espeak-ng voice: synthetic audio
TIERS = ("unit", "model", "e2e", "slurm", "browser")  # `make test-fast`: not e2e, slurm or browser


def pytest_collection_modifyitems(config, items):
    """Every test is in a tier (its file's `pytestmark`, or its own mark for a slower test in a faster file)."""
    bare = [item.nodeid for item in items if not any(item.get_closest_marker(t) for t in TIERS)]
    if bare:
        raise pytest.UsageError(f"tests without a tier mark ({', '.join(TIERS)}): {', '.join(bare)}")


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    from crossrep.data.demo import write_demo

    return write_demo(tmp_path_factory.mktemp("data") / "demo", tuple(LANGS), sentences=24, progress=False)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Chromium's path; installed with apt-get where it is missing and this is root (minutes), else skip."""
    from browser import find_or_install

    return find_or_install()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    from crossrep.models.seamless import build_tiny

    return build_tiny(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def tiny_sonar(tmp_path_factory) -> dict:
    from crossrep.models.sonar import SonarAdapter

    return SonarAdapter.resolve("tiny", tmp_path_factory.mktemp("sonar"))


def job_dict(out: Path, root: Path, checkpoint: str | Path, **changes) -> dict:
    job = yaml.safe_load((REPO / "jobs" / "demo.yaml").read_text())
    job = copy.deepcopy(job)
    job["out"] = str(out)
    job["data"].update(root=str(root), demo=False, languages=LANGS, crossmodal_sentences=16,
                       crosslingual_sentences=12)
    job["models"] = job["models"][:1]
    job["analysis"].pop("lens", None)  # the demo's lens reads an audio LLM this job leaves out
    job["models"][0]["checkpoint"] = str(checkpoint)
    job["models"][0].pop("languages", None)
    job["extract"].update(batch_size=4, chunk_size=8)
    job["similarity"].update(baseline_repeats=2, measures=["svcca"], jackknife=4)
    for key, value in changes.items():
        node = job
        *path, last = key.split(".")
        for part in path:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    return job


# the shared reference run's settings: every measure, a sentence bootstrap, chunks of 4 sentences
REFERENCE = {"executor.kind": "debug", "extract.chunk_size": 4, "similarity.bootstrap": 2,
             "similarity.measures": ["svcca", "pwcca", "cka", "cka_debiased", "mknn"]}


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, demo_root, tiny):
    """One finished run (extract, reduce, aggregate) of the small job with REFERENCE's settings, made once per
    session for the tests that read it or copy it (never write into it)."""
    from crossrep.config import load_job
    from crossrep.launch import launcher

    tmp = tmp_path_factory.mktemp("reference")
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(job_dict(tmp / "run", demo_root, tiny, **REFERENCE)))
    job = load_job(path)
    launcher(job).run()
    return job


@pytest.fixture
def make_job(tmp_path, demo_root, tiny):
    """Write a job YAML (the demo job on the small data and tiny model) and return its path."""

    def make(name: str = "job", **changes) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(job_dict(tmp_path / name, demo_root, tiny, **changes)))
        return path

    return make
