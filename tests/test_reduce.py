"""The reduction: the same results from every Dask scheduler and array backend, equal to pair-by-pair SVCCA."""

import numpy as np
import pytest
import xarray as xr

from crossrep.config import load_job
from crossrep.errors import StoreError
from crossrep.plan import create_store
from crossrep.extract import run_all
from crossrep.reduce import array_backend
from crossrep.results import model_dataset, write as reduce_run
from crossrep.store import ActivationStore, ShardKey
from reference_svcca import reference_svcca

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, demo_root, tiny):
    import yaml

    from conftest import job_dict

    tmp = tmp_path_factory.mktemp("reduce")
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(job_dict(tmp / "out", demo_root, tiny, **{"data.languages": ["eng", "deu", "khm"]})))
    job = load_job(path)
    create_store(job, progress=False)
    run_all(job, progress=False)
    return path


def test_threads_and_local_cluster_agree_and_match_reference(extracted):
    threads = load_job(extracted, ["similarity.scheduler=threads"])
    local = load_job(extracted, ["similarity.scheduler=local", "similarity.workers=2"])
    store = ActivationStore(threads.out)
    a = model_dataset(threads, store, "seamless")
    b = model_dataset(local, store, "seamless")
    xr.testing.assert_identical(a, b)
    cl = list(store.model("seamless").crosslingual_ids)
    for point in ("in", "2", "out"):
        x = store.read(ShardKey("seamless", "text", "deu"), point, cl)
        y = store.read(ShardKey("seamless", "speech", "khm"), point, cl)
        assert float(a.text_speech.sel(measure="svcca", pair=point, lang_a="deu", lang_b="khm")) == pytest.approx(
            reference_svcca(x, y), abs=1e-6)


def test_backend_choice(extracted):
    assert array_backend("numpy") is np
    try:
        import cupy

        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if not has_gpu:
        assert array_backend("auto") is np
        with pytest.raises(StoreError, match="similarity.backend is cupy but CuPy cannot use a GPU here"):
            array_backend("cupy")
        return
    gpu = load_job(extracted, ["similarity.backend=cupy"])
    cpu = load_job(extracted, ["similarity.backend=numpy"])
    store = ActivationStore(cpu.out)
    xr.testing.assert_allclose(model_dataset(gpu, store, "seamless"), model_dataset(cpu, store, "seamless"),
                               atol=1e-6)


def test_reduce_writes_zarr_and_csv_readable_with_xarray(extracted):
    job = load_job(extracted)
    reduce_run(job)
    ds = xr.open_zarr(job.out / "similarity.zarr", group="seamless", consolidated=False)
    assert ds.text.dims == ("measure", "text_point", "lang_a", "lang_b") and ds.sizes["lang_a"] == 3
    assert not (job.out / "similarity.zarr.partial").exists()
    assert (job.out / "similarity.csv").read_text().startswith(  # no boot_* columns: the default B is 0
        "model,model_b,measure,family,point_a,point_b,lang_a,lang_b,score,adjusted,null_mean,null_std,p_value\n")


def test_crosslayer_and_crossmodel_families(tmp_path, demo_root, tiny):
    """Cross-layer scores equal pair-by-pair SVCCA on the stored activations; a model against an identical copy
    of itself scores 1 at every equal point (the cross-model family)."""
    import yaml

    from conftest import job_dict

    spec = job_dict(tmp_path / "out", demo_root, tiny, **{"data.languages": ["eng", "khm"]})
    spec["models"].append(dict(spec["models"][0], name="copy"))
    spec["similarity"].update(families=["crossmodal", "text", "speech", "text_speech", "crosslayer", "crossmodel"])
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    job = load_job(path)
    create_store(job, progress=False)
    run_all(job, progress=False)
    store = ActivationStore(job.out)
    ds = model_dataset(job, store, "seamless").sel(measure="svcca")
    cm = list(store.model("seamless").crossmodal_ids["khm"])
    t2 = store.read(ShardKey("seamless", "text", "khm"), "2", cm)
    t4 = store.read(ShardKey("seamless", "text", "khm"), "4", cm)
    s3 = store.read(ShardKey("seamless", "speech", "khm"), "3", cm)
    xl = ds.crosslayer_text.sel(lang="khm")
    assert float(xl.sel(text_point="2", text_point_b="4")) == pytest.approx(reference_svcca(t2, t4), abs=1e-6)
    assert float(xl.sel(text_point="4", text_point_b="2")) == float(xl.sel(text_point="2", text_point_b="4"))
    assert float(ds.crosslayer_text_speech.sel(lang="khm", text_point="2", speech_point="3")) == pytest.approx(
        reference_svcca(t2, s3), abs=1e-6)
    same = ds.crossmodel_speech__copy.sel(lang_copy="eng")
    diagonal = [float(same.sel(speech_point=p, copy_speech_point=p)) for p in ds.speech_point.values]
    assert np.allclose(diagonal, 1.0, atol=1e-6)
    assert float(ds.crossmodel_speech__copy_null_mean.sel(lang_copy="eng", speech_point="2",
                                                          copy_speech_point="2")) < 0.99
    assert "crossmodel_text__seamless" not in model_dataset(job, store, "copy")  # each pair of models once
