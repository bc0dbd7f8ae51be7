"""Extraction: batched equals one at a time, resume after SIGKILL is byte-identical, bad models fail clearly."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zarr
from safetensors.torch import load_file, save_file

from crossrep.config import load_job
from crossrep.errors import ModelError
from crossrep.extract import ShardFailures, run_all, run_task
from crossrep.plan import write_resolved
from crossrep.plan import create_store, shards
from crossrep.store import ActivationStore
from helpers import tree_bytes

pytestmark = pytest.mark.model


def _extract(job_file):
    job = load_job(job_file)
    create_store(job, progress=False)
    run_all(job, progress=False)
    return job


def test_batched_equals_one_at_a_time(make_job):
    batched = _extract(make_job("batched", **{"extract.batch_size": 8}))
    single = _extract(make_job("single", **{"extract.batch_size": 1}))
    a, b = ActivationStore(batched.out), ActivationStore(single.out)
    worst = {}
    for shard in shards(batched):
        for point in a.points(shard):
            x, y = a.read(shard, point), b.read(shard, point)
            rel = np.abs(x - y).max() / np.abs(y).max()
            worst[shard.modality] = max(worst.get(shard.modality, 0.0), rel)
    assert set(worst) == {"text", "speech"}
    print("batched vs one at a time, worst relative difference:", worst)
    assert worst["text"] <= 1e-5 and worst["speech"] <= 1e-5, worst


@pytest.mark.e2e  # a killed extraction process and its resume: 14 s
def test_sigkill_then_resume_is_byte_identical(make_job):
    changes = {"extract.batch_size": 1, "extract.chunk_size": 1, "data.languages": ["deu", "eng"]}
    reference = _extract(make_job("reference", **changes))
    job = load_job(make_job("killed", **changes))
    create_store(job, progress=False)
    job_file = write_resolved(job)
    speech = next(s for s in shards(job) if s.modality == "speech" and s.lang == "deu")
    store = ActivationStore(job.out)
    proc = subprocess.Popen([sys.executable, "-m", "crossrep", "extract", str(job_file), "--shard",
                             str(shards(job).index(speech))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(store.state(speech).chunks_done) >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the extraction ended before it could be killed"
    state = store.state(speech)
    assert state.status == "partial" and 3 <= len(state.chunks_done) < state.n_chunks
    group = job.out / "activations.zarr" / speech.key
    done_files = {p: p.stat().st_mtime_ns for c in state.chunks_done for p in group.glob(f"*/c/{c}/0")}
    assert len(done_files) == len(state.chunks_done) * 7  # one shard file per point and chunk
    run_task(str(job_file), [shards(job).index(speech)], progress=False)
    assert all(p.stat().st_mtime_ns == t for p, t in done_files.items()), "complete chunks were recomputed"
    run_all(job, progress=False)
    assert tree_bytes(job.out / "activations.zarr") == tree_bytes(reference.out / "activations.zarr")


def test_nan_activation_is_reported_with_point_and_sentence(make_job, tiny, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny.iterdir():
        if f.is_file():
            (broken / f.name).write_bytes(f.read_bytes())
    weights = load_file(broken / "model.safetensors")
    key = next(k for k in weights if k.startswith("text_encoder.layers.1.") and k.endswith("fc1.weight"))
    weights[key][0, 0] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    job = load_job(make_job("nan", **{"models.0.checkpoint": str(broken), "data.languages": ["eng", "deu"]}))
    create_store(job, progress=False)
    with pytest.raises(ShardFailures, match=r"seamless/text/eng: NaN or infinite activation at point '2' for "
                                            r"sentence id \d+"):
        run_all(job, progress=False)
    store = ActivationStore(job.out)
    states = {s.key: store.state(s) for s in shards(job)}
    assert states["seamless/text/eng"].status == "failed"
    assert "point '2'" in states["seamless/text/eng"].error
    assert states["seamless/speech/eng"].status == "complete"  # other shards still ran


def test_model_lacking_a_language_is_refused_at_planning(make_job, tmp_path):
    from crossrep.models.seamless import build_tiny

    narrow = build_tiny(tmp_path / "narrow", languages=("eng", "deu"))
    job = load_job(make_job("narrow", **{"models.0.checkpoint": str(narrow)}))
    with pytest.raises(ModelError, match=r"model seamless \(.*narrow\) has no text support for fra; it knows "
                                         r"deu, eng"):
        create_store(job, progress=False)
    assert not (job.out / "activations.zarr").exists()


def test_store_refuses_a_different_job(make_job):
    path = make_job("a")
    create_store(load_job(path), progress=False)
    other = load_job(path, ["data.crossmodal_sentences=15"])
    from crossrep.errors import StoreError

    with pytest.raises(StoreError, match=r"made by a different job; nothing was changed. It differs in:\n  "
                                         r"data.crossmodal_sentences: stored 16, requested 15\n"):
        create_store(other, progress=False)
    g = zarr.open_group(str(other.out / "activations.zarr"), mode="r")
    assert g["seamless/text/eng"].attrs["chunks_done"] == []


def test_feature_workers_change_nothing_and_timing_is_recorded(make_job):
    """Featurized in a DataLoader worker or in the task: byte-identical stores; each shard's timing record has
    every stage, its sentence count, and `status --timing` shows it."""
    from crossrep.status import render_timing
    from crossrep.timing import STAGES

    inline = _extract(make_job("inline", **{"extract.feature_workers": 0}))
    worker = _extract(make_job("worker", **{"extract.feature_workers": 1}))
    a, b = (tree_bytes(j.out / "activations.zarr") for j in (inline, worker))
    assert a.keys() == b.keys() and len(a) > 100
    assert {k: v for k, v in a.items() if k != "zarr.json"} == {k: v for k, v in b.items() if k != "zarr.json"}
    store = ActivationStore(worker.out)
    for key in shards(worker):
        t = store.state(key).timing
        assert set(t["seconds"]) == set(STAGES) and t["sentences"] == len(store.ids(key))
        assert t["seconds"]["forward"] > 0 and t["seconds"]["features"] > 0 and t["feature_workers"] == 1
        assert 0 <= t["padding"] < 1 and t["unit"] == [str(key)]
    assert sum(store.state(k).timing["seconds"]["load"] > 0 for k in shards(worker)) == 1  # one model load
    text = render_timing(worker)
    assert "total seamless" in text and "seamless/speech/khm" in text
    assert text.splitlines()[-1].startswith("total all")
    assert not (worker.out / "activations.zarr" / "activations.timing").exists()  # beside the store, not in it


def test_batches_by_a_seconds_budget_bound_the_padding(make_job):
    from crossrep.extract import Extractor

    job = load_job(make_job("budget", **{"extract.batch_size": 8, "extract.batch_seconds": 3.0}))
    extractor = Extractor(job, None, progress=False)
    rng = np.random.default_rng(0)
    clips = [np.zeros(int(s * 16000), np.float32) for s in rng.uniform(0.3, 2.5, 40)]
    batches = extractor.batches(clips)
    assert sorted(r for b in batches for r in b) == list(range(40))
    assert all(len(b) <= 8 and (len(b) == 1 or len(b) * max(len(clips[r]) for r in b) <= 3.0 * 16000)
               for b in batches)
    assert batches == extractor.batches(clips)  # the same lengths, the same batches
    lengths = [len(c) for c in clips]
    assert [len(b) for b in batches] != [8] * 5  # the budget, not the size, cut them
    from crossrep.extract import padding_share

    assert padding_share([[1, 3], [2, 2]]) == 0.2  # 8 of 10 padded positions hold input
    budgeted = padding_share([[lengths[r] for r in b] for b in batches])
    fixed = padding_share([[sorted(lengths)[r] for r in range(i, i + 8)] for i in range(0, 40, 8)])
    assert budgeted <= fixed + 1e-9
    texts = ["x" * n for n in range(40)]
    assert [len(b) for b in extractor.batches(texts)] == [8] * 5  # text: by batch_size alone
    assert all(lengths[b[i]] <= lengths[b[i + 1]] for b in batches for i in range(len(b) - 1))
