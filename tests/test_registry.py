"""Families and measures register themselves: a new family is one folder, a new measure one class, and a plain
(non-editable) install, as on a cluster, carries every family and the analysis package."""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from crossrep import measures, models

pytestmark = pytest.mark.unit

TOY = """\
name: toy_family
adapter: ToyAdapter
joint: true
points: "in, 1..L"
summary: "a throwaway family for the registry test"
"""


def run(code: str, cwd: Path, path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(path)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def test_a_new_family_folder_is_all_it_takes(tmp_path):
    pkg = tmp_path / "crossrep"
    shutil.copytree(REPO / "src" / "crossrep", pkg, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for link in ("analysis", "jobs", "slurm"):  # the links point at the repository's top-level folders
        (pkg / link).unlink()
        shutil.copytree(REPO / link, pkg / link, ignore=shutil.ignore_patterns("__pycache__"))
    toy = pkg / "models" / "toy"
    toy.mkdir()
    (toy / "family.yaml").write_text(TOY)
    (toy / "__init__.py").write_text("class ToyAdapter:\n    joint_inputs = True\n")
    proc = run("import crossrep, crossrep.models as m\n"
               "assert crossrep.__file__.startswith(%r), crossrep.__file__\n"
               "print(m.families()['toy_family'])\n"
               "print(m.adapter_class('toy_family').__name__)\n"
               "from crossrep.cli import parser\n"
               "print(parser().format_help())" % str(tmp_path), tmp_path, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Family(name='toy_family', folder='toy', adapter='ToyAdapter', joint=True" in proc.stdout
    assert "\nToyAdapter\n" in proc.stdout
    assert "  toy_family       a throwaway family for the registry test; joint pass; in, 1..L" in proc.stdout
    # and a job may name it: the same check the CLI runs before any work
    proc = run("from crossrep.cli import check_job\nfrom crossrep.config import load_job\n"
               "check_job(load_job('demo', ['models.0.adapter=toy_family']))\n"
               "check_job(load_job('demo', ['models.0.adapter=toy_famly']))", tmp_path, tmp_path)
    assert "models[0].adapter: unknown model family 'toy_famly' (known: audioflamingo3, " in proc.stderr
    assert "toy_family" in proc.stderr.split("known:")[1]


def test_family_descriptions_agree_with_their_adapters():
    for name, family in models.families().items():
        cls = models.adapter_class(name)
        assert family.joint == cls.joint_inputs, name


def test_a_broken_description_is_named(tmp_path):
    bad = tmp_path / "family.yaml"
    bad.write_text("name: x\nadapter: X\njoint: maybe\npoints: a\nsummary: b\n")
    with pytest.raises(models.ConfigError, match=r"family.yaml: joint: expected true or false, got 'maybe'"):
        models._read(bad, "x")
    bad.write_text("name: x\nadapter: X\n")
    with pytest.raises(models.ConfigError, match=r"family.yaml: missing joint, points, summary"):
        models._read(bad, "x")


def test_a_new_measure_is_one_class():
    @measures.register
    @dataclass(frozen=True)
    class Cosine(measures.GramMeasure):  # the cosine of the two centred, flattened Gram matrices = linear CKA
        scale: float = 1.0

        name = "toy_cosine"
        invariances = ("orthogonal", "isotropic scaling", "translation")

        def matrix(self, x):
            x = (x - x.mean(axis=0)) * self.scale
            gram = x @ x.T
            return gram.ravel() / np.linalg.norm(gram)

    try:
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((30, 5)), rng.standard_normal((30, 7))
        import crossrep

        assert crossrep.compare(x, y, measure="toy_cosine", scale=2.0, permutations=2).score == pytest.approx(
            measures.get("cka").score(x, y))
        from conftest import job_dict

        from crossrep.config import parse_job

        job = parse_job(job_dict(tmp_out := Path("/nonexistent/out"), tmp_out, "tiny", **{
            "similarity.measures": ["svcca", {"name": "toy_cosine", "scale": 3.0}]}))
        assert [m.settings() for m in measures.resolve(job.similarity)][1] == {"name": "toy_cosine", "scale": 3.0}
    finally:
        del measures.REGISTRY["toy_cosine"]


def test_a_plain_install_has_every_family_and_the_analysis(tmp_path):
    """`pip install .` (not editable), as a cluster's environment gets it."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("src", "analysis", "jobs", "slurm"):
        shutil.copytree(REPO / name, source / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not any(p.is_symlink() for p in (target / "crossrep").iterdir())
    proc = run("import importlib.resources as r, crossrep, crossrep.analysis.aggregate, crossrep.models as m\n"
               "print(crossrep.__file__)\nprint(' '.join(m.families()))\n"
               "for pkg, name in (('crossrep.jobs', 'demo.yaml'), ('crossrep.slurm', 'horeka.yaml'),\n"
               "                  ('crossrep.analysis', 'calibration.json'), ('crossrep.analysis', 'templates')):\n"
               "    assert (r.files(pkg) / name).exists(), (pkg, name)\n"
               "for name in m.families():\n"
               "    m.adapter_class(name)\n", tmp_path, target)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, families = proc.stdout.splitlines()[:2]
    assert first.startswith(str(target))
    assert families.split() == list(models.families())


def test_every_family_is_exercised_by_the_tests():
    """A family folder without a test of its tiny model fails here, naming it."""
    texts = [p.read_text() for p in (REPO / "tests").glob("test_*.py") if p.name != "test_registry.py"]
    untested = [name for name in models.families() if not any(f'"{name}"' in t or f"'{name}'" in t for t in texts)]
    assert untested == []
