"""A job with two audio LLMs (Qwen2-Audio with `text_input: alone`, Voxtral through the generic hf_audio_llm
family, joint) and the logit lens on
both, end to end on tiny models: what the store holds equals the adapter's lens with the partner sentences
spelled out, the chance partner is never the sentence itself, damaged lens chunks are found, the report's
section is there."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import crossrep
from crossrep.config import load_job
from crossrep.store import ActivationStore, ShardKey

pytestmark = pytest.mark.e2e

LANGS = ["eng", "deu", "fra"]


@pytest.fixture(scope="module")
def lens_run(tmp_path_factory, demo_root):
    from crossrep.launch import launcher

    tmp = tmp_path_factory.mktemp("lens")
    job = {"name": "lens", "out": str(tmp / "run"),
           "data": {"root": str(demo_root), "languages": LANGS, "crossmodal_sentences": 8,
                    "crosslingual_sentences": 6},
           "models": [{"name": "qwen", "adapter": "qwen2_audio", "checkpoint": "tiny",
                       "options": {"text_input": "alone"}},
                      {"name": "vox", "adapter": "hf_audio_llm", "checkpoint": "tiny:voxtral"}],
           "extract": {"batch_size": 3, "chunk_size": 4, "device": "cpu", "threads": 1, "feature_workers": 0},
           "similarity": {"measures": ["svcca"], "baseline_repeats": 2, "permutations": 4, "jackknife": 3,
                          "workers": 1},
           "retrieval": {"bootstrap": 10}, "probes": {"permutations": 20, "bootstrap": 10},
           "analysis": {"language_bootstrap": 100, "lens": {"models": ["qwen", "vox"], "points": ["1", "out"],
                                                            "k": 3}},
           "executor": {"kind": "debug"}}
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    launcher(load_job(path)).run()
    return load_job(path)


def test_stored_lens_equals_the_adapter_with_the_next_sentence_as_partner(lens_run):
    from crossrep.data.corpus import open_language
    from crossrep.models import adapter_class
    from crossrep.models.lens import LensRequest

    results = crossrep.open(lens_run.out)
    for name in ("qwen", "vox"):
        ds = results.lens(name)
        plan = results.store.model(name)
        assert list(ds.point.values) == ["1", "out"] and ds.attrs["k"] == 3
        assert ds.attrs["text_input"] == ("alone" if name == "qwen" else "joint")
        adapter = adapter_class(plan.adapter)(plan.checkpoint, plan.options, device="cpu")
        cls = type(adapter)  # the generic family's adapter is its recipe's
        lang = open_language(lens_run.data, "deu")
        ids = list(plan.shard_ids["deu"])
        assert list(ds.sentence.values) == sorted({i for lg in LANGS for i in plan.shard_ids[lg]})
        tokens = cls.text_tokenizer(plan.checkpoint, plan.options)
        texts = lang.texts(ids)
        partner = tuple(tuple(tokens(texts[(r + 1) % len(ids)])) for r in range(len(ids)))
        assert all(ids[(r + 1) % len(ids)] != ids[r] for r in range(len(ids)))  # never the sentence itself
        got = adapter.embed_joint("deu", list(zip(lang.audio(ids), texts)), {"speech": ("1",)},
                                  LensRequest(("1", "out"), 3, partner))
        for p in ("1", "out"):
            stored = ds.sel(lang="deu", sentence=ids, point=p)
            fields = np.stack([stored[f].values for f in ("recall_1", "recall_10", "recall_k", "logprob",
                                                          "chance_recall_1", "chance_recall_10",
                                                          "chance_recall_k", "chance_logprob")], axis=1)
            assert np.allclose(fields, got["speech"][f"lens_{p}"], rtol=0, atol=1e-5), (name, p)
            assert (stored.top_ids.values == got["speech"][f"lenstop_{p}"]).all()
        # own transcript ids in the joint sequence are what the text tokenizer gives: the partner is scored alike
        st = adapter.states(lang.audio(ids[:1]), texts[:1])
        assert st.input_ids[0][st.transcript[0]].tolist() == tokens(texts[0])


def test_report_and_tables_carry_the_lens(lens_run):
    import pandas as pd

    out = lens_run.out
    table = pd.read_csv(out / "lens_onset.csv")
    assert set(table.model) == {"qwen", "vox"} and set(table.metric) == {"recall_10", "logprob"}
    assert set(table.text_input) == {"alone", "joint"}
    assert (out / "figures" / "fig10_lens.png").is_file()
    page = (out / "report" / "index.html").read_text()
    assert '<section id="lens">' in page and "Logit lens" in page and "most probable tokens" in page


def test_damaged_lens_chunk_is_found_and_recomputed(lens_run, tmp_path):
    import shutil

    from crossrep.launch import launcher

    out = tmp_path / "copy"
    shutil.copytree(lens_run.out, out)
    (out / "job.yaml").write_text((lens_run.out / "job.yaml").read_text().replace(str(lens_run.out), str(out)))
    store = ActivationStore(out)
    key = ShardKey("qwen", "speech", "fra")
    before = store.read(key, "lens_out")
    (out / "activations.zarr" / "qwen" / "speech" / "fra" / "lens_out" / "c" / "1" / "0").unlink()
    damage = store.verify([key])
    assert [(d.point, d.chunk) for d in damage] == [("lens_out", 1)]
    job = load_job(out / "job.yaml")
    launcher(job).run()
    assert np.array_equal(ActivationStore(out).read(key, "lens_out"), before)


def test_the_readme_lens_line_runs_on_a_run_with_the_lens(lens_run):
    from helpers import readme_python_example

    _, line = readme_python_example()
    scope = {"r": crossrep.open(lens_run.out)}
    exec(compile(line.replace('"qwen2_audio"', '"qwen"'), "README.md", "exec"), scope)
    lens = scope["lens"]
    assert set(lens.sizes) >= {"lang", "sentence", "point"} and list(lens.point.values) == ["1", "out"]
