"""The Python API on a finished run: crossrep.open reads what the pipeline wrote, crossrep.compare scores two
arrays as the reduction does."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import crossrep
from crossrep import errors, measures, stats

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
    pair = str(ds.pair.values[-1])
    t_point, s_point = str(ds.pair_text_point.sel(pair=pair).values), str(ds.pair_speech_point.sel(pair=pair).values)
    for lang in ("eng", "khm"):
        x = r.activations("seamless", "text", lang, t_point, sentences="crossmodal")
        y = r.activations("seamless", "speech", lang, s_point, sentences="crossmodal")
        params = {"knn": reference_run.similarity.knn} if measure == "mknn" else {}
        got = crossrep.compare(x, y, measure=measure, permutations=3, **params)
        assert got.score == pytest.approx(float(ds.crossmodal.sel(pair=pair, lang=lang)), abs=1e-12)
    a = r.activations("seamless", "text", "eng", t_point, sentences="crosslingual")
    b = r.activations("seamless", "text", "deu", t_point, sentences="crosslingual")
    got = crossrep.compare(a, b, measure=measure, permutations=3, **params)
    assert got.score == pytest.approx(float(ds.text.sel(text_point=t_point, lang_a="eng", lang_b="deu")), abs=1e-12)


def test_compare_gives_chance_p_value_and_interval_that_agree_with_a_planted_relation():
    rng = np.random.default_rng(0)
    shared = rng.standard_normal((150, 6))
    x = shared @ rng.standard_normal((6, 40)) + 0.5 * rng.standard_normal((150, 40))
    y = shared @ rng.standard_normal((6, 30)) + 0.5 * rng.standard_normal((150, 30))
    got = crossrep.compare(x, y, permutations=50, bootstrap=40, seed=3)
    assert got.measure == measures.get("svcca")
    assert got.chance == pytest.approx(got.null.mean()) and len(got.null) == 50 and len(got.boot) == 40
    assert got.adjusted == pytest.approx((got.score - got.chance) / (1 - got.chance))
    assert got.p_value == pytest.approx(1 / 51)  # every shuffle scores below the planted relation
    assert got.low < got.score < got.high and (got.low, got.high) == tuple(stats.interval(got.boot, 0.95))
    noise = crossrep.compare(rng.standard_normal((150, 40)), rng.standard_normal((150, 30)), permutations=50)
    assert noise.p_value > 0.05 and abs(noise.adjusted) < 0.1  # independent arrays: at chance
    assert noise.low is None and noise.high is None
    knn = crossrep.compare(x, y, measure="mknn", knn=5, permutations=5)
    assert knn.measure.knn == 5 and knn.score == pytest.approx(measures.get("mknn", knn=5).score(x, y))
    with pytest.raises(ValueError, match="same rows"):
        crossrep.compare(x, y[:100])
    with pytest.raises(ValueError, match="k: not a parameter of mknn"):
        crossrep.compare(x, y, measure="mknn", k=5)


def test_import_crossrep_is_light():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import sys, crossrep; print(sorted(m for m in ('torch', 'xarray', "
                                                 "'pandas', 'zarr') if m in sys.modules))"],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr
