"""The GPU paths against the CPU paths: every measure through `crossrep.compare` on CuPy and NumPy arrays,
retrieval with both scorings, a whole reduction and its readouts with `similarity.backend: cupy`, and the
extraction (activations and the logit lens) with `extract.device: cuda`. Skips where no GPU is visible (CI
has none); `bench/gpu_checks.sh` runs this file on a GPU machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

import crossrep
from crossrep import measures
from crossrep.reduce import array_backend


CUPY = None if array_backend("auto") is np else array_backend("auto")  # CuPy where it sees a GPU
needs_cupy = pytest.mark.skipif(CUPY is None, reason="needs CuPy and a GPU it can use (pip install crossrep[gpu] "
                                                     "on a GPU machine)")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to torch")
pytestmark = pytest.mark.model


def related(seed: int, n: int, widths=(40, 30)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((n, 8))
    return tuple(shared @ rng.standard_normal((8, w)) + 0.7 * rng.standard_normal((n, w)) for w in widths)


@needs_cupy
@pytest.mark.parametrize("name", sorted(measures.REGISTRY))
def test_every_measure_gives_numpy_results_on_cupy_arrays(name):
    """Score, permutation null, jackknife and bootstrap of each registered measure at its defaults: CuPy
    input gives NumPy's numbers to 1e-9 (float64 on both; the resampling indices are the same seeded ones)."""
    x, y = related(1, 120)
    cpu = crossrep.compare(x, y, measure=name, permutations=20, bootstrap=10, jackknife=5)
    gpu = crossrep.compare(CUPY.asarray(x), CUPY.asarray(y), measure=name, permutations=20, bootstrap=10,
                           jackknife=5)
    for field in ("score", "chance", "p_value", "se", "low", "high", "boot_low", "boot_high"):
        assert float(getattr(gpu, field)) == pytest.approx(float(getattr(cpu, field)), abs=1e-9), field
    np.testing.assert_allclose(np.asarray(gpu.null), cpu.null, atol=1e-9)
    assert 0.2 < cpu.score <= 1.0  # the planted correspondence is found, so the check compares real scores


@needs_cupy
@pytest.mark.parametrize("scoring", ["cosine", "margin"])
@pytest.mark.parametrize("center", [False, True])
def test_retrieval_gives_numpy_results_on_cupy_arrays(scoring, center):
    """600 sentences (three blocks of source rows): the same retrieved index for every row."""
    a, noise = related(2, 600, (64, 64))
    b = a + 2.0 * noise  # the same space, noisy: some rows find their own
    acc, idx = crossrep.retrieval(a, b, scoring=scoring, k=4, center=center, indices=True)
    gacc, gidx = crossrep.retrieval(CUPY.asarray(a), CUPY.asarray(b), scoring=scoring, k=4, center=center,
                                    indices=True)
    assert isinstance(gidx, np.ndarray) and gacc == acc
    np.testing.assert_array_equal(gidx, idx)
    assert 1 / 600 < acc < 1  # neither chance nor perfect: the ranking is exercised


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, demo_root, tiny):
    from tiny_store import extracted_job

    return extracted_job(tmp_path_factory.mktemp("gpu"), demo_root, tiny,
                         **{"data.languages": ["eng", "deu", "khm"], "similarity.measures":
                            ["svcca", "pwcca", "cka", "cka_debiased", "mknn", "procrustes", "rsa", "cknna"],
                            "similarity.bootstrap": 2, "retrieval.bootstrap": 20, "probes.permutations": 20,
                            "probes.bootstrap": 10})


@needs_cupy
def test_reduction_and_readouts_on_cupy_equal_numpy(extracted):
    """Every family and measure of a model, and its retrieval and probe tables, with similarity.backend
    cupy and numpy on the same store."""
    from crossrep.config import load_job
    from crossrep.readout import model_tables
    from crossrep.results import model_dataset
    from crossrep.store import ActivationStore

    gpu = load_job(extracted.source, ["similarity.backend=cupy"])
    cpu = load_job(extracted.source, ["similarity.backend=numpy"])
    store = ActivationStore(cpu.out)
    g, c = model_dataset(gpu, store, "seamless"), model_dataset(cpu, store, "seamless")
    # Where a measure is not defined by its inputs alone the backends may differ: PWCCA once the kept widths
    # exceed the 12 cross-lingual sentences (its weights then depend on the eigen-solver's basis), and the kNN
    # measures' bootstrap replicates and the intervals made of them, whose repeated sentences tie as
    # neighbours (the order of ties is the solver's). Everything else agrees to 1e-8 (measured on an H200:
    # PWCCA up to 2.8e-5, mknn and cknna replicates up to 0.11, the rest up to 3.0e-9).
    loose = {("pwcca", name) for name in c.data_vars} | {
        (m, name) for m in ("mknn", "cknna") for name in c.data_vars if name.endswith(("_boot", "_ci_sentences"))}
    worst = {}
    for name in c.data_vars:
        if "measure" not in c[name].dims or not np.issubdtype(c[name].dtype, np.floating):
            continue
        for m in c.measure.values:
            a, b = g[name].sel(measure=m).values, c[name].sel(measure=m).values
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"{name} {m}")
            worst[(str(m), name)] = float(np.nanmax(np.abs(a - b), initial=0.0))
    print("largest differences:", {k: f"{v:.1e}" for k, v in worst.items() if v > 1e-12})
    assert all(v <= 1e-8 for k, v in worst.items() if k not in loose), {k: v for k, v in worst.items() if v > 1e-8}
    assert worst[("svcca", "text")] <= 1e-10 and worst[("cka", "text_speech")] <= 1e-10
    tables = zip(model_tables(gpu, store, "seamless"), model_tables(cpu, store, "seamless"), strict=True)
    for g, c in tables:
        assert g.name == c.name
        for field in ("score", "chance", "boot", "p"):
            if getattr(c, field) is not None:
                np.testing.assert_allclose(getattr(g, field), getattr(c, field), atol=1e-9, err_msg=g.name)


def _extracted(tmp, demo_root, device: str, dtype: str = "float32"):
    """The activations and logit lens of a tiny Qwen2-Audio, extracted on `device` (no reduction: only the
    stored arrays are compared)."""
    from crossrep.config import load_job
    from crossrep.extract import run_all
    from crossrep.plan import create_store

    job = {"name": f"lens-{device}-{dtype}", "out": str(tmp / f"{device}-{dtype}"),
           "data": {"root": str(demo_root), "languages": ["eng", "deu"], "crossmodal_sentences": 8,
                    "crosslingual_sentences": 6},
           "models": [{"name": "qwen", "adapter": "qwen2_audio", "checkpoint": "tiny"}],
           "extract": {"batch_size": 4, "chunk_size": 4, "device": device, "dtype": dtype, "threads": 1,
                       "feature_workers": 0},
           "similarity": {"measures": ["svcca"], "jackknife": 3},
           "analysis": {"lens": {"models": ["qwen"], "points": ["1", "out"], "k": 3}},
           "executor": {"kind": "debug"}}
    path = tmp / f"{device}-{dtype}.yaml"
    path.write_text(yaml.safe_dump(job))
    loaded = load_job(path)
    create_store(loaded, progress=False)
    run_all(loaded, progress=False)
    return crossrep.open(path)


def _relative(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest difference of a pooled vector, relative to that vector's norm."""
    return float((np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)).max())


@needs_cuda
def test_extraction_on_cuda_matches_cpu(tmp_path_factory, demo_root):
    """A tiny Qwen2-Audio with the logit lens, run end to end on the GPU and on the CPU: float32 activations
    agree to 1e-3 of each vector's norm (cuDNN's TF32 convolutions in the audio encoder round to 10 mantissa
    bits), the lens's log-probabilities to 1e-2 nats; bfloat16 on the GPU stays within 5 %."""
    tmp = tmp_path_factory.mktemp("cuda")
    cpu, gpu, half = (_extracted(tmp, demo_root, "cpu"), _extracted(tmp, demo_root, "cuda"),
                      _extracted(tmp, demo_root, "cuda", "bfloat16"))
    from crossrep.store import ShardKey

    assert gpu.store.timing(ShardKey("qwen", "speech", "eng"))["device"].startswith("cuda")
    plan = cpu.store.model("qwen")
    worst = {"float32": 0.0, "bfloat16": 0.0}
    for modality in ("text", "speech"):
        for lang in ("eng", "deu"):
            for point in (p.name for p in plan.points[modality]):
                ref = cpu.activations("qwen", modality, lang, point)
                for label, run in (("float32", gpu), ("bfloat16", half)):
                    worst[label] = max(worst[label], _relative(run.activations("qwen", modality, lang, point), ref))
    print(f"largest relative difference of a pooled vector to the CPU's: {worst}")
    assert worst["float32"] < 1e-3 and worst["bfloat16"] < 0.05
    ref, got = cpu.lens("qwen"), gpu.lens("qwen")
    assert ref.sizes == got.sizes
    for name in ("logprob", "chance_logprob"):
        diff = float(np.abs(got[name].values - ref[name].values).max())
        print(f"lens {name}: largest difference {diff:.2e} nats")
        assert diff < 1e-2, name
