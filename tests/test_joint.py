"""The joint pass: an audio LLM's text and speech shard of a language run in one task, one forward pass per
batch, and write the same stores as two separate passes."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from conftest import job_dict

from crossrep.config import load_job
from crossrep.extract import run_task
from crossrep.models.salmonn import Salmonn
from crossrep.plan import create_store, shards, units
from crossrep.store import ActivationStore

pytestmark = pytest.mark.model


@pytest.fixture
def salmonn_job(tmp_path, demo_root):
    def make(name: str):
        job = job_dict(tmp_path / name, demo_root, "tiny", **{"data.languages": ["eng", "khm"]})
        job["models"] = [{"name": "salmonn", "adapter": "salmonn", "checkpoint": "tiny"},
                         {"name": "seamless", "adapter": "seamless_m4t_v2", "checkpoint": "tiny"}]
        job["out"] = str(tmp_path / name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(job))
        return path

    return make


@pytest.fixture
def count_states(monkeypatch):
    """Counts sentences through SALMONN's forward pass (the real one: the wrapper only counts)."""
    counted = []
    real = Salmonn.run

    def counting(self, prepared):
        counted.append(len(prepared["waves"]))
        return real(self, prepared)

    monkeypatch.setattr(Salmonn, "run", counting)
    return counted


def test_units_pair_an_audio_llms_modalities_only(salmonn_job):
    job = load_job(salmonn_job("plan"))
    table = [str(k) for k in shards(job)]
    grouped = [[table[i] for i in unit] for unit in units(job, list(range(len(table))))]
    assert grouped == [["salmonn/text/eng", "salmonn/speech/eng"], ["salmonn/text/khm", "salmonn/speech/khm"],
                       ["seamless/text/eng"], ["seamless/text/khm"], ["seamless/speech/eng"], ["seamless/speech/khm"]]
    assert units(job, [3, 0]) == [[3], [0]]  # text of eng and speech of khm: no partner present


def test_joint_pass_halves_the_forward_passes_and_equals_two_passes(salmonn_job, count_states):
    one, two = salmonn_job("joint"), salmonn_job("separate")
    for path in (one, two):
        create_store(load_job(path), progress=False)
    job = load_job(one)
    salmonn = [i for i, k in enumerate(shards(job)) if k.model == "salmonn"]
    run_task(str(one), salmonn, progress=False)
    joint = sum(count_states)
    count_states.clear()
    for i in salmonn:
        run_task(str(two), [i], progress=False)
    separate = sum(count_states)
    sentences = sum(len(ActivationStore(job.out).ids(shards(job)[i])) for i in salmonn)
    assert separate == sentences and joint == sentences // 2
    a, b = ActivationStore(job.out), ActivationStore(load_job(two).out)
    for i in salmonn:
        key = shards(job)[i]
        assert a.state(key).complete and b.state(key).complete
        for p in a.points(key):
            x, y = a.read(key, p), b.read(key, p)
            assert x.shape == y.shape and np.abs(x - y).max() <= 1e-6, (key, p)


def test_joint_pass_resumes_a_shard_the_other_finished(salmonn_job, count_states):
    """The speech shard done alone first: the joint unit then computes only the text side's chunks."""
    path = salmonn_job("resume")
    job = load_job(path)
    create_store(job, progress=False)
    table = shards(job)
    text, speech = [next(i for i, k in enumerate(table) if str(k) == f"salmonn/{m}/eng") for m in ("text", "speech")]
    run_task(str(path), [speech], progress=False)
    count_states.clear()
    run_task(str(path), [text, speech], progress=False)
    store = ActivationStore(job.out)
    assert sum(count_states) == len(store.ids(table[text]))
    assert store.state(table[text]).complete and store.state(table[speech]).complete


def test_a_clip_longer_than_the_model_takes_is_refused_naming_the_file(tmp_path, demo_root):
    """Qwen2-Audio takes 30 s: a 31 s clip fails its unit with the file's name, before any forward pass."""
    import shutil

    import soundfile as sf

    from crossrep.extract import ShardFailures
    from crossrep.data.fleurs import FleursLanguage

    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    eng = FleursLanguage(root, "eng", "test", 0)
    victim = eng.sentences[sorted(eng.sentences)[0]].file
    sf.write(eng.dir / "audio" / "test" / victim, np.zeros(31 * 16_000, np.float32), 16_000, subtype="PCM_16")
    job = job_dict(tmp_path / "long", root, "tiny", **{"data.languages": ["eng", "deu"]})
    job["models"] = [{"name": "qwen2_audio", "adapter": "qwen2_audio", "checkpoint": "tiny"}]
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(job))
    create_store(load_job(path), progress=False)
    table = shards(load_job(path))
    unit = [i for i, k in enumerate(table) if k.lang == "eng"]  # the text and speech shard of English
    # the TSV still gives the old length: the clip is refused where it is decoded (a DataLoader worker)
    with pytest.raises(ShardFailures, match=rf"clip {victim} is 31.0 s, longer than the 30 s .*its TSV says"):
        run_task(str(path), unit, progress=False)
    store = ActivationStore(load_job(path).out)
    assert all(victim in store.state(table[i]).error for i in unit)
    # with the TSV's sample count right, before any batch runs
    tsv = eng.tsv.read_text().splitlines()
    fixed = ["\t".join(c[:5] + [str(31 * 16_000)] + c[6:]) if c[1] == victim else line
             for line in tsv for c in [line.split("\t")]]
    eng.tsv.write_text("\n".join(fixed) + "\n")
    with pytest.raises(ShardFailures, match=rf"clip {victim} \(sentence id \d+\) is 31.0 s, longer than the 30 s"):
        run_task(str(path), unit, progress=False)
    assert all(not store.state(table[i]).chunks_done for i in unit)
