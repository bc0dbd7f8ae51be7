"""Damage on disk in a complete store: verified, named, recomputed exactly, byte-identical; nothing deleted.

Every test copies a complete store made once by an uninterrupted run (`complete`), damages it with real
file operations, and drives the real `crossrep` command in a subprocess.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import job_dict
from crossrep.store import LAYOUT
from helpers import tree_bytes

pytestmark = pytest.mark.e2e

SETTINGS = {"extract.chunk_size": 4, "executor.kind": "debug"}  # as conftest.REFERENCE's


def crossrep(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "crossrep", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def complete(reference_run):
    """An uninterrupted run of the small job (the session's shared one, made with SETTINGS' extraction
    settings): the bytes every repaired store must equal."""
    return reference_run.out


@pytest.fixture
def copy(complete, tmp_path, demo_root, tiny):
    """A job file for a fresh output folder holding a copy of the complete store."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copytree(complete / "activations.zarr", out / "activations.zarr")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job_dict(out, demo_root, tiny, **SETTINGS)))
    return path, out


def files(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_damaged_chunks_are_named_then_recomputed_exactly(copy, complete):
    path, out = copy
    store = out / "activations.zarr"
    deleted = store / "seamless/text/eng/out/c/1/0"
    zeroed = store / "seamless/speech/deu/3/c/0/0"
    truncated = store / "seamless/text/fra/2/c/2/0"
    deleted.unlink()
    zeroed.write_bytes(b"\0" * zeroed.stat().st_size)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    shutil.rmtree(store / "seamless/speech/khm")
    redone = {("text", "eng", "1"), ("speech", "deu", "0"), ("text", "fra", "2")}  # every point of a damaged chunk

    def recomputed(p: Path) -> bool:
        parts = p.relative_to(store).parts  # seamless/<modality>/<lang>/<point>/c/<chunk>/0
        return parts[1:3] == ("speech", "khm") or (len(parts) == 7 and (parts[1], parts[2], parts[5]) in redone)

    untouched = {p: t for p, t in files(store).items() if not recomputed(p)}

    status = crossrep("status", path, "--verify")
    assert status.returncode == 1, status.stderr
    text = status.stdout
    assert re.search(r"verified \d+ chunks in [\d.]+ s: 4 damaged; marked not done", text), text
    assert f"seamless/text/eng point out chunk 1: file missing ({deleted})" in text
    assert re.search(rf"seamless/speech/deu point 3 chunk 0: unreadable \(.*\) \({re.escape(str(zeroed))}\)", text)
    assert re.search(rf"seamless/text/fra point 2 chunk 2: unreadable \(.*\) \({re.escape(str(truncated))}\)", text)
    assert "seamless/speech/khm: shard group missing; `run` re-creates it from the plan" in text
    assert re.search(r"seamless/text/eng\s+partial\s+3/4", text), text

    run = crossrep("run", path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "4 of 8 shards to extract" in run.stderr
    assert tree_bytes(store) == tree_bytes(complete / "activations.zarr")
    changed = [p for p, t in untouched.items() if p.stat().st_mtime_ns != t]
    # only the shard groups' progress attributes are rewritten; no undamaged chunk file is
    assert all(p.name == "zarr.json" for p in changed), changed
    again = crossrep("status", path, "--verify")
    assert again.returncode == 0 and "0 damaged" in again.stdout


def test_run_finds_damage_itself_and_reduce_refuses_it(copy, complete):
    path, out = copy
    victim = out / "activations.zarr/seamless/speech/fra/len/c/0/0"
    victim.write_bytes(b"\0" * victim.stat().st_size)
    refused = crossrep("reduce", path)
    assert refused.returncode == 2
    assert "1 damaged chunks, now marked for recomputation" in refused.stderr
    assert "seamless/speech/fra point len chunk 0: unreadable" in refused.stderr
    assert "Traceback" not in refused.stderr
    run = crossrep("run", path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "1 of 8 shards to extract" in run.stderr
    assert tree_bytes(out / "activations.zarr") == tree_bytes(complete / "activations.zarr")

    victim.unlink()  # damage found by `run` alone, without a `status --verify` first
    run = crossrep("run", path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"damaged: seamless/speech/fra point len chunk 0: file missing ({victim}); it will be recomputed" \
        in run.stderr
    assert tree_bytes(out / "activations.zarr") == tree_bytes(complete / "activations.zarr")


def test_lost_root_metadata_deletes_nothing_and_repair_keeps_every_chunk(copy, complete):
    path, out = copy
    store = out / "activations.zarr"
    (store / "zarr.json").unlink()
    before = tree_bytes(store)
    for command in (("run", path), ("extract", path), ("status", path)):
        proc = crossrep(*command)
        assert proc.returncode == 2, (command, proc.stderr)
        assert "the root metadata (zarr.json) is missing or unreadable, but the folder holds" in proc.stderr
        assert "nothing was changed or deleted. `crossrep repair JOB`" in proc.stderr
        assert tree_bytes(store) == before, f"`crossrep {command[0]}` changed the damaged store"
    repaired = crossrep("repair", path)
    assert repaired.returncode == 0, repaired.stderr
    assert "0 chunks verified and kept, 8 of 8 shards complete" in repaired.stdout  # progress was in the groups
    assert tree_bytes(store) == tree_bytes(complete / "activations.zarr")
    assert crossrep("status", path, "--verify").returncode == 0


def test_repair_adopts_chunks_of_a_group_that_lost_its_metadata(copy, complete):
    path, out = copy
    store = out / "activations.zarr"
    (store / "zarr.json").write_text("{ not json")
    (store / "seamless/text/deu/zarr.json").unlink()  # the progress record of a shard is gone too
    repaired = crossrep("repair", path)
    assert repaired.returncode == 0, repaired.stderr
    assert "4 chunks verified and kept, 8 of 8 shards complete" in repaired.stdout
    assert list(store.glob("zarr.json.unreadable.*")), "the unreadable metadata is kept beside the new one"
    for p in store.glob("zarr.json.unreadable.*"):
        p.unlink()
    assert tree_bytes(store) == tree_bytes(complete / "activations.zarr")


def test_old_layout_is_refused_untouched(copy):
    path, out = copy
    meta = out / "activations.zarr" / "zarr.json"
    raw = json.loads(meta.read_text())
    raw["attributes"]["crossrep"]["layout"] = 1
    meta.write_text(json.dumps(raw))
    before = tree_bytes(out / "activations.zarr")
    proc = crossrep("run", path)
    assert proc.returncode == 2
    assert f"store layout 1, written by another crossrep version; this one reads layout {LAYOUT}" in proc.stderr
    assert tree_bytes(out / "activations.zarr") == before
