"""The Python API on a finished run: crossrep.open reads what the pipeline wrote, crossrep.compare scores two
arrays as the reduction does."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import crossrep
from crossrep import errors

pytestmark = pytest.mark.e2e


def test_open_reads_the_runs_results(reference_run):
    r = crossrep.open(reference_run.out)
    assert r.job.name == reference_run.name and r.job.out == reference_run.out
    ds = r.similarity("seamless")
    assert isinstance(ds, xr.Dataset) and ds["crossmodal"].chunks is not None  # lazy: Dask-backed
    assert list(ds.measure.values) == ["svcca", "pwcca", "cka", "cka_debiased", "mknn"]
    found = r.findings()
    assert isinstance(found, pd.DataFrame)
    assert len(found) == len(found.drop_duplicates(["finding", "model", "measure"]))
    assert set(found.finding) == {1, 2, 3, 4, 5, 6} and set(found.measure) == set(ds.measure.values)
    status = r.status()
    assert len(status) == 8 and (status.status == "complete").all()
    x = r.activations("seamless", "speech", "deu", "out")
    lazy = r.activations("seamless", "speech", "deu", "out", xarray=True)
    np.testing.assert_array_equal(x, lazy.values)
    assert x.dtype == np.float32 and x.shape[0] == len(lazy.sentence)
    with pytest.raises(errors.StoreError, match="has no point 'outt' \\(have in, 1, .*out"):
        r.activations("seamless", "speech", "deu", "outt")
    with pytest.raises(errors.StoreError, match="model 'seamless' has no language 'spa'"):
        r.activations("seamless", "speech", "spa", "out")


@pytest.mark.parametrize("measure", ["svcca", "pwcca", "cka", "cka_debiased", "mknn"])
def test_compare_equals_the_stored_score(reference_run, measure):
    r = crossrep.open(reference_run.out)
    ds = r.similarity("seamless").sel(measure=measure)
    tol = 1e-8 if measure == "pwcca" else 1e-12  # the reduction solves PWCCA's eigenproblems in padded batches
    pair = str(ds.pair.values[-1])
    t_point, s_point = str(ds.pair_text_point.sel(pair=pair).values), str(ds.pair_speech_point.sel(pair=pair).values)
    for lang in ("eng", "khm"):
        x = r.activations("seamless", "text", lang, t_point, sentences="crossmodal")
        y = r.activations("seamless", "speech", lang, s_point, sentences="crossmodal")
        params = {"knn": reference_run.similarity.knn} if measure == "mknn" else {}
        got = crossrep.compare(x, y, measure=measure, permutations=3, jackknife=4, **params)
        assert got.score == pytest.approx(float(ds.crossmodal.sel(pair=pair, lang=lang)), abs=tol)
    a = r.activations("seamless", "text", "eng", t_point, sentences="crosslingual")
    b = r.activations("seamless", "text", "deu", t_point, sentences="crosslingual")
    got = crossrep.compare(a, b, measure=measure, permutations=3, jackknife=4, **params)
    assert got.score == pytest.approx(float(ds.text.sel(text_point=t_point, lang_a="eng", lang_b="deu")), abs=tol)


def test_the_readme_snippet_runs_on_a_finished_run(reference_run, capsys):
    from helpers import readme_python_example

    snippet, _ = readme_python_example()  # its lens line runs in test_lens_pipeline, on a run with the lens
    assert 'crossrep.open("runs/demo")' in snippet
    exec(compile(snippet.replace('"runs/demo"', repr(str(reference_run.out))), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "demo ['seamless']" in printed and "finding" in printed and "complete" in printed


def test_stored_retrieval_equals_crossrep_retrieval(reference_run):
    """Every stored retrieval accuracy of several points and language pairs, recomputed from the stored
    activations with the public function (both scorings, every direction)."""
    r = crossrep.open(reference_run.out)
    ds = r.similarity("seamless").load()
    langs = list(ds.lang.values)
    k, checked = reference_run.retrieval.k, 0
    for s, scoring in enumerate(ds.scoring.values):
        for pair in ds.pair.values[-3:]:
            t, sp = str(ds.pair_text_point.sel(pair=pair).values), str(ds.pair_speech_point.sel(pair=pair).values)
            for a in langs:
                speech = r.activations("seamless", "speech", a, sp, "crossmodal")
                text = r.activations("seamless", "text", a, t, "crossmodal")
                want = crossrep.retrieval(speech, text, scoring=scoring, k=k)
                assert ds.retrieval_crossmodal.sel(scoring=scoring, pair=pair, lang=a).item() == want
                b = langs[(langs.index(a) + 1) % len(langs)]
                want = crossrep.retrieval(r.activations("seamless", "speech", a, sp, "crosslingual"),
                                          r.activations("seamless", "text", b, t, "crosslingual"), scoring, k)
                assert ds.retrieval_speech_text.sel(scoring=scoring, pair=pair, lang_a=a, lang_b=b).item() == want
                checked += 2
        for modality in ("text", "speech"):
            dim = f"{modality}_point"
            for point in ds[dim].values[-2:]:
                for a in langs:
                    for b in langs:
                        got = ds[f"retrieval_{modality}"].sel(scoring=scoring, lang_a=a, lang_b=b, **{dim: point})
                        if a == b:
                            assert np.isnan(got.item())
                            continue
                        want = crossrep.retrieval(r.activations("seamless", modality, a, str(point), "crosslingual"),
                                                  r.activations("seamless", modality, b, str(point), "crosslingual"),
                                                  scoring, k)
                        assert got.item() == want
                        checked += 1
    assert checked > 100
    n = len(r.store.model("seamless").crosslingual_ids)
    assert np.allclose(ds.retrieval_text_chance.values[np.isfinite(ds.retrieval_text.values)], 1 / n)
    ci = ds.retrieval_text_ci.values
    score = ds.retrieval_text.values[..., None]
    fin = np.isfinite(score[..., 0])
    assert (ci[fin][:, 0] <= score[fin][:, 0] + 1e-12).all() and (ci[fin][:, 1] >= score[fin][:, 0] - 1e-12).all()


def test_stored_probe_equals_a_direct_probe(reference_run):
    """A stored language probe, recomputed from the stored activations with crossrep.probes."""
    from crossrep.probes import probe

    r = crossrep.open(reference_run.out)
    ds = r.similarity("seamless").load()
    plan = r.store.model("seamless")
    cfg = reference_run.probes
    point = str(ds.text_point.values[-1])
    x = np.concatenate([r.activations("seamless", "text", lang, point, "crosslingual") for lang in plan.languages])
    labels = np.repeat(np.arange(len(plan.languages)), len(plan.crosslingual_ids))
    groups = np.tile(np.array(plan.crosslingual_ids), len(plan.languages))
    got = probe(x, labels, groups, cfg.folds, cfg.permutations, cfg.bootstrap, cfg.c, reference_run.similarity.seed,
                f"seamless/probe_language_text/{point}")
    assert ds.probe_language_text.sel(text_point=point).item() == got.accuracy
    assert ds.probe_language_text_p.sel(text_point=point).item() == got.p
    assert ds.probe_language_text_chance.sel(text_point=point).item() == got.chance
    assert got.accuracy > 0.5 > 1 / len(plan.languages)  # the tiny model's text tells its languages apart
