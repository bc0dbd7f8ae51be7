"""A run folder is relocatable: what lies inside `out` (the tiny checkpoint, logs, timing records) is recorded
relative to it, so a copied or moved run folder verifies, resumes and repairs in its new place.

A finished run of the small job (its `checkpoint: tiny` model inside the folder, as the demo's is) is copied
elsewhere with its original moved away, so that nothing can read from the old place; the real `crossrep` command
then runs on the copy in a subprocess, given the folder (whose job.yaml still names the old `out`).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import job_dict
from crossrep.config import load_job
from crossrep.launch import launcher
from crossrep.plan import fingerprint
from helpers import tree_bytes

pytestmark = pytest.mark.e2e

SETTINGS = {"extract.chunk_size": 4, "executor.kind": "debug", "models.0.checkpoint": "tiny"}
TINY = Path("checkpoints") / "tiny-seamless_m4t_v2"  # where `checkpoint: tiny` builds the model, inside `out`


def crossrep(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "crossrep", *map(str, args)], check=False, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, demo_root, tiny):
    """A finished run (extract, reduce, aggregate) whose tiny model was built inside its folder, and the bytes of
    its activation store (the pristine reference every copy must equal)."""
    tmp = tmp_path_factory.mktemp("finished")
    out = tmp / "run"
    shutil.copytree(tiny, out / TINY)  # the same build `checkpoint: tiny` makes there, without building it again
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(job_dict(out, demo_root, tiny, **SETTINGS)))
    launcher(load_job(path)).run()
    return out, tree_bytes(out / "activations.zarr")


@pytest.fixture
def moved(finished, tmp_path):
    """A copy of the finished run folder in another place; the original is moved away while the test runs."""
    out, pristine = finished
    copy = tmp_path / "elsewhere" / "run"
    shutil.copytree(out, copy)
    away = out.with_name("moved-away")
    out.rename(away)
    try:
        yield copy, out, pristine
    finally:
        away.rename(out)


def mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_paths_inside_out_are_recorded_relative_to_it(finished):
    out, _ = finished
    model = json.loads((out / "activations.zarr" / "seamless" / "zarr.json").read_text())["attributes"]
    assert model["checkpoint"] == f"<out>/{TINY.as_posix()}"
    records = [p for d in ("activations.zarr", "activations.timing") for p in (out / d).rglob("*.json")]
    records += list((out / "activations.zarr").rglob("zarr.json"))
    assert records and not [p for p in records if str(out) in p.read_text()]
    assert str(out) in (out / "job.yaml").read_text()  # the resolved job names its folder; a copy names the old one


def test_moved_run_folder_names_a_damaged_chunk_and_repairs_it_byte_identical(moved):
    copy, old, pristine = moved
    store = copy / "activations.zarr"
    victim = store / "seamless/speech/deu/3/c/1/0"
    data = bytearray(victim.read_bytes())
    for i in range(16, 48):  # inside the first compressed inner chunk: its checksum no longer matches
        data[i] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert yaml.safe_load((copy / "job.yaml").read_text())["out"] == str(old) and not old.exists()

    status = crossrep("status", copy, "--verify")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "1 damaged; marked not done" in status.stdout, status.stdout
    assert "seamless/speech/deu point 3 chunk 1: unreadable" in status.stdout
    assert f"({victim})" in status.stdout

    run = crossrep("run", copy)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "1 of 8 shards to extract" in run.stderr
    assert tree_bytes(store) == pristine
    assert yaml.safe_load((copy / "job.yaml").read_text())["out"] == str(copy)
    assert (copy / "similarity.zarr").is_dir() and not old.exists()
    again = crossrep("status", copy, "--verify")
    assert again.returncode == 0 and "0 damaged" in again.stdout, again.stdout + again.stderr


def test_moved_run_folder_verifies_clean_and_resumes_without_recomputing(moved):
    copy, old, pristine = moved
    store = copy / "activations.zarr"
    before = mtimes(store)
    for job in (copy, copy / "job.yaml"):  # the folder, or its job.yaml naming the old `out`
        status = crossrep("status", job, "--verify")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "0 damaged" in status.stdout and str(store) in status.stdout
    run = crossrep("run", copy, "--stages", "extract")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "0 of 8 shards to extract" in run.stderr
    assert mtimes(store) == before, "nothing in the store is rewritten"
    assert tree_bytes(store) == pristine and not old.exists()


def test_store_of_an_earlier_version_with_absolute_paths(moved):
    """Earlier versions recorded the tiny checkpoint absolutely: where it names this folder, the store resumes;
    where it names the folder the run was moved from, it is refused, naming the key, and nothing changes."""
    copy, old, pristine = moved
    meta = copy / "activations.zarr" / "seamless" / "zarr.json"
    raw = json.loads(meta.read_text())
    for where, ok in ((copy, True), (old, False)):
        raw["attributes"]["checkpoint"] = str(where / TINY)
        meta.write_text(json.dumps(raw, indent=2))
        run = crossrep("run", copy, "--stages", "extract")
        if ok:
            assert run.returncode == 0, run.stderr[-3000:]
            assert "0 of 8 shards to extract" in run.stderr
        else:
            assert run.returncode == 2
            assert "made by a different job; nothing was changed" in run.stderr
            assert "plan.seamless.checkpoint: stored '" in run.stderr  # (long paths are shortened)
            assert "plan.seamless.options" not in run.stderr and "data.root" not in run.stderr
        assert tree_bytes(copy / "activations.zarr") == {**pristine, "seamless/zarr.json": meta.read_bytes()}


def test_data_inside_out_moves_with_the_folder(tmp_path, demo_root, tiny):
    """A job.yaml in an output folder, naming another `out` (where the run was made): `out` is the folder, and a
    data root inside the old `out` is taken inside the folder; the fingerprint records it relative to `out`."""
    old, new = tmp_path / "old", tmp_path / "new"
    new.mkdir()
    (new / "job.yaml").write_text(yaml.safe_dump(job_dict(old, old / "data", tiny)))
    for spec in (new, new / "job.yaml"):  # a job.yaml without a store beside it is a job file like any other
        assert load_job(spec).out == old.resolve()
    (new / "activations.zarr").mkdir()  # a job.yaml beside a store is its output folder's, like the folder itself
    for spec in (new, str(new) + os.sep, new / "job.yaml"):
        job = load_job(spec)
        assert job.out == new.resolve() and job.data.root == new.resolve() / "data"
        assert fingerprint(job)["data"]["root"] == "<out>/data"
    other = tmp_path / "job.yaml"  # a job file elsewhere keeps its own `out`
    other.write_text(yaml.safe_dump(job_dict(old, demo_root, tiny)))
    assert load_job(other).out == old.resolve()
