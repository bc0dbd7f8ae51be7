"""The demo pipeline end to end on small data: extract, reduce, aggregate, through both local executors."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from crossrep.store import ActivationStore, ShardKey
from conftest import REFERENCE
from helpers import tree_bytes
from reference_svcca import reference_svcca

pytestmark = pytest.mark.e2e


@pytest.fixture
def debug_run(reference_run):
    return reference_run


def test_outputs_exist_and_are_labelled(debug_run):
    import json

    from test_findings import agreement_problems

    out = debug_run.out
    record = json.loads((out / "findings.json").read_text())
    assert len(record["results"]) == 30 and agreement_problems(record) == []
    assert {r["verdict"] for r in record["results"]} <= {"too few languages", "not applicable"}  # 4 languages
    assert all(r["p_value"] is None for r in record["results"])
    for name in ("fig2_crossmodal", "fig3_crosslingual", "fig5_last_layer"):
        for ext in ("png", "pdf", "csv"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 0
    full = xr.open_zarr(out / "similarity.zarr", group="seamless", consolidated=False)
    assert list(full.measure.values) == ["svcca", "pwcca", "cka", "cka_debiased", "mknn"]
    ds = full.sel(measure="svcca")
    langs = ["eng", "deu", "fra", "khm"]
    assert list(ds.lang.values) == langs and list(ds.lang_a.values) == langs
    assert list(ds.text_point.values) == ["in", "1", "2", "3", "4", "out"]
    assert list(ds.speech_point.values) == ["in", "1", "2", "3", "4", "out", "len"]
    assert list(ds.pair.values) == ["in", "1", "2", "3", "4", "out", "len"]
    assert ds.crossmodal.shape == (7, 4) and ds.text_speech.shape == (7, 4, 4)
    text = ds.text.values
    assert np.isnan(text[:, range(4), range(4)]).all()
    assert np.allclose(text, np.swapaxes(text, 1, 2), equal_nan=True)
    assert ds.attrs["measures"]["svcca"]["variance"] == 0.9 and ds.attrs["crosslingual_sentences"] == 12
    table = pd.read_csv(out / "similarity.csv")
    assert list(table.columns) == ["model", "model_b", "measure", "family", "point_a", "point_b", "lang_a", "lang_b",
                                   "score", "adjusted", "null_mean", "null_std", "p_value", "boot_low", "boot_high"]
    # per measure: text 6 points x 6 pairs + speech 7 x 6 + text_speech 7 x 16 + crossmodal 7 x 4
    assert len(table) == 5 * (36 + 42 + 112 + 28)
    assert table.groupby(["measure", "family"]).size()[("cka", "crossmodal")] == 28
    row = table[(table.measure == "svcca") & (table.family == "text") & (table.point_a == "2")
                & (table.lang_a == "eng") & (table.lang_b == "khm")]
    assert len(row) == 1 and float(row.score.iloc[0]) == pytest.approx(
        float(ds.text.sel(text_point="2", lang_a="eng", lang_b="khm")), abs=1e-8)
    assert len(pd.read_csv(out / "baseline.csv")) == 5 * (6 + 7 + 7 + 7)
    means = pd.read_csv(out / "means.csv")
    assert set(means.family) == {"crossmodal", "text", "speech", "text_speech"}
    assert (means.languages_low <= means["mean"] + 1e-12).all()
    assert (means["mean"] <= means.languages_high + 1e-12).all()
    assert (out / "figures" / "fig2_crossmodal_cka_debiased.png").stat().st_size > 0


def test_readouts_are_drawn_tested_and_reported(debug_run):
    """Retrieval and probes reach the figures, retrieval_onset.csv, findings.json and the report's section."""
    import json

    out = debug_run.out
    for name in ("fig7_retrieval", "fig8_retrieval_languages", "fig9_probes"):
        for ext in ("png", "pdf", "csv"):
            assert (out / "figures" / f"{name}.{ext}").stat().st_size > 0
    onset = pd.read_csv(out / "retrieval_onset.csv")
    pairs = xr.open_zarr(out / "similarity.zarr", group="seamless", consolidated=False).pair.size
    assert set(onset.scoring) == {"cosine", "margin"} and len(onset) <= 2 * pairs
    assert (onset.low <= onset.accuracy + 1e-12).all() and (onset.accuracy <= onset.high + 1e-12).all()
    # the interval excludes chance exactly when the Holm-adjusted test holds (and the accuracy is above it)
    assert ((onset.low > onset.chance) == onset.above_chance).all()
    assert onset.onset.sum() <= 2 and not (onset.onset & ~onset.above_chance).any()
    readouts = json.loads((out / "findings.json").read_text())["readouts"]
    assert len(readouts["onset"]) == len(onset) and {r["probe"] for r in readouts["probes"]} == {
        "probe_language_text", "probe_language_speech", "probe_language_pooled", "probe_modality"}
    page = (out / "report" / "index.html").read_text()
    assert 'id="readouts"' in page and "Retrieval and probes" in page and "speech" in page
    assert page.count("data:image/png;base64,") >= 3 + 3  # the findings' figures and the three readout figures
    assert "invariant to orthogonal, isotropic scaling, translation" in page  # svcca in the methods


def test_similarity_equals_reference_on_stored_activations(debug_run):
    out = debug_run.out
    store = ActivationStore(out)
    ds = xr.open_zarr(out / "similarity.zarr", group="seamless", consolidated=False).sel(measure="svcca")
    plan = store.model("seamless")
    cl = list(plan.crosslingual_ids)
    x = store.read(ShardKey("seamless", "text", "eng"), "2", cl)
    y = store.read(ShardKey("seamless", "text", "khm"), "2", cl)
    assert float(ds.text.sel(text_point="2", lang_a="eng", lang_b="khm")) == pytest.approx(
        reference_svcca(x, y), abs=1e-6)
    s = store.read(ShardKey("seamless", "speech", "fra"), "len", cl)
    t = store.read(ShardKey("seamless", "text", "deu"), "out", cl)
    assert float(ds.text_speech.sel(pair="len", lang_a="deu", lang_b="fra")) == pytest.approx(
        reference_svcca(t, s), abs=1e-6)
    cm = list(plan.crossmodal_ids["deu"])
    t = store.read(ShardKey("seamless", "text", "deu"), "3", cm)
    s = store.read(ShardKey("seamless", "speech", "deu"), "3", cm)
    assert float(ds.crossmodal.sel(pair="3", lang="deu")) == pytest.approx(reference_svcca(t, s), abs=1e-6)
    base = ds.crossmodal_baseline.sel(pair="len").values
    assert base.shape == (2,) and np.all((base > 0) & (base < 1))


def test_activation_store_is_plain_zarr_and_xarray(debug_run):
    path = debug_run.out / "activations.zarr"
    g = zarr.open_group(str(path), mode="r")
    shard = g["seamless/speech/khm"]
    ids = shard["sentence"][:]
    assert np.all(np.diff(ids) > 0)
    assert shard["len"].shape == (len(ids), 64) and shard["in"].shape == (len(ids), 160)
    assert shard.attrs["complete"] is True and shard.attrs["chunks_done"] == list(range(shard.attrs["n_chunks"]))
    assert shard["len"].shards == (REFERENCE["extract.chunk_size"], 64)
    ds = xr.open_zarr(path, group="seamless/text/eng", consolidated=False)
    assert list(ds["sentence"].values) == list(g["seamless/text/eng/sentence"][:])
    assert ds["out"].dims == ("sentence", "feature_out")
    assert np.isfinite(ds["out"].values).all()


def test_local_executor_gives_identical_stores(debug_run, tmp_path, demo_root, tiny):
    import yaml

    from conftest import job_dict

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job_dict(tmp_path / "local", demo_root, tiny, **{  # one measure: it is the
        **REFERENCE, "executor.kind": "local", "executor.workers": 2, "similarity.measures": ["cka"]})))  # same graph
    proc = subprocess.run([sys.executable, "-m", "crossrep", "run", str(path)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "results in" in proc.stdout
    assert tree_bytes(tmp_path / "local" / "activations.zarr") == tree_bytes(debug_run.out / "activations.zarr")
    a = xr.open_zarr(tmp_path / "local" / "similarity.zarr", group="seamless", consolidated=False)
    b = xr.open_zarr(debug_run.out / "similarity.zarr", group="seamless", consolidated=False)
    xr.testing.assert_equal(a.load(), b.sel(measure=["cka"]).load())  # every value; attrs name the measures
    logs = list((tmp_path / "local" / "logs").rglob("*_log.err"))
    assert logs, "submitit logs go under the run's folder"
