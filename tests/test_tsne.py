"""t-SNE of a tiny store (analysis/tsne.py): reproducible coordinates, one row per modality, language and
sentence, the default point, a clear error for an unknown point, and the written figure and table."""

import numpy as np
import pandas as pd
import pytest

from crossrep.analysis import tsne
from crossrep.errors import ConfigError
from crossrep.point import Point
from crossrep.store import ShardKey

pytestmark = pytest.mark.model

LANGS = ["eng", "deu", "fra", "khm"]


@pytest.fixture(scope="module")
def job(tmp_path_factory, demo_root, tiny):
    from tiny_store import extracted_job

    return extracted_job(tmp_path_factory.mktemp("tsne"), demo_root, tiny,
                         analysis={"tsne": {"points": {"seamless": "3"}, "seed": 7, "perplexity": 10}})


@pytest.fixture(scope="module")
def frame(job):
    return tsne.embed(job, "seamless", seed=0)


def layers(n: int, extra: tuple[str, ...] = ()) -> tuple[Point, ...]:
    return ((Point("in", 8, 0.0, "input"),) + tuple(Point(str(i), 8, float(i)) for i in range(1, n + 1))
            + tuple(Point(name, 8, n + 1.0, "adaptor") for name in extra) + (Point("out", 8, n + 0.5, "output"),))


def test_default_point_is_the_study_layer_or_the_middle_layer():
    assert tsne.default_point(layers(24), "seamless_m4t_v2") == "14"
    assert tsne.default_point(layers(24), "sonar") == "14"
    assert tsne.default_point(layers(32), "salmonn") == "18"
    assert tsne.default_point(layers(4), "seamless_m4t_v2") == "2"
    assert tsne.default_point(layers(3, ("len",)), "sonar") == "2"
    assert tsne.default_point(layers(16), "salmonn") == "8"  # no "18": the middle of 16
    assert tsne.default_point(layers(24), "another") == "12"
    with pytest.raises(ConfigError, match="no layer point"):
        tsne.default_point((Point("in", 8, 0.0, "input"),), "sonar")


def test_embed_rows_labels_and_default_point(job, frame):
    from crossrep.plan import open_checked

    plan = open_checked(job).model("seamless")
    m = len(plan.crosslingual_ids)
    assert m == 12 and len(frame) == 2 * len(LANGS) * m
    assert list(frame.columns) == ["model", "point", "lang", "family", "level", "modality", "sentence_id", "x", "y"]
    assert set(frame.point) == {"2"} and set(frame.model) == {"seamless"}  # 4 layers: the second
    counts = frame.groupby(["modality", "lang"]).size()
    assert (counts == m).all() and len(counts) == 8
    for lang in LANGS:
        rows = frame[(frame.lang == lang) & (frame.modality == "speech")]
        assert list(rows.sentence_id) == list(plan.crosslingual_ids)
    by_lang = frame.drop_duplicates("lang").set_index("lang")
    assert by_lang.loc["khm", "family"] == "Austroasiatic" and by_lang.loc["fra", "family"] == "Indo-European"
    assert by_lang.loc["khm", "level"] == "low" and by_lang.loc["eng", "level"] == "high"
    assert frame.x.dtype == np.float64 and np.isfinite(frame[["x", "y"]].values).all()


def capture(monkeypatch) -> list[dict]:
    """Replace scikit-learn's TSNE by a recorder of its arguments and input (coordinates: zeros)."""
    from sklearn import manifold

    calls = []

    class Capture:
        def __init__(self, **kwargs):
            calls.append({"kwargs": kwargs})

        def fit_transform(self, x):
            calls[-1]["x"] = x
            return np.zeros((len(x), 2))

    monkeypatch.setattr(manifold, "TSNE", Capture)
    return calls


def test_same_seed_same_coordinates(job, frame):
    again = tsne.embed(job, "seamless", seed=0)
    assert np.array_equal(again[["x", "y"]].values, frame[["x", "y"]].values)
    assert not np.allclose(frame.x.values, frame.x.values[0])  # a real layout, not a constant


def test_standardised_input_reaches_the_embedding(job, monkeypatch):
    """The matrix given to t-SNE: text then speech, languages in order, each feature standardised over all rows."""
    from crossrep.plan import open_checked

    calls = capture(monkeypatch)
    tsne.embed(job, "seamless", point="3", seed=5, perplexity=50.0)
    seen = calls[0]
    store = open_checked(job)
    ids = list(store.model("seamless").crosslingual_ids)
    raw = np.vstack([store.read(ShardKey("seamless", mod, lang), "3", ids) for mod in ("text", "speech")
                     for lang in LANGS]).astype(np.float64)
    want = (raw - raw.mean(0)) / raw.std(0)
    assert seen["x"].dtype == np.float64 and np.allclose(seen["x"], want, atol=1e-12)
    assert seen["kwargs"] == {"n_components": 2, "perplexity": (96 - 1) / 3, "random_state": 5, "init": "pca"}


def test_an_unknown_point_names_model_modality_and_points(job):
    with pytest.raises(ConfigError) as err:
        tsne.embed(job, "seamless", point="14")
    text = str(err.value)
    assert "seamless" in text and "'14'" in text and "text" in text and "in, 1, 2, 3, 4, out" in text
    with pytest.raises(ConfigError, match=r"speech has no point 'len'|text has no point 'len'"):
        tsne.embed(job, "seamless", point="len")  # speech only
    with pytest.raises(ConfigError, match="64 wide for text but 160 for speech"):
        tsne.embed(job, "seamless", point="in")


def test_figure_and_run_write_png_pdf_and_coordinates(job, frame, tmp_path):
    second = frame.assign(model="other")
    png = tsne.figure([frame, second], tmp_path / "fig")
    assert png == tmp_path / "fig.png"
    for ext in ("png", "pdf", "csv"):
        assert (tmp_path / f"fig.{ext}").stat().st_size > 0
    table = pd.read_csv(tmp_path / "fig.csv")
    assert len(table) == 2 * len(frame) and list(table.model.unique()) == ["seamless", "other"]
    assert np.allclose(table.x.values[: len(frame)], frame.x.values)
    out = tsne.run(job, tmp_path / "figures")
    assert out == tmp_path / "figures" / "fig4_tsne.png"
    for ext in ("png", "pdf", "csv"):
        assert (tmp_path / "figures" / f"fig4_tsne.{ext}").stat().st_size > 0
    coords = pd.read_csv(tmp_path / "figures" / "fig4_tsne.csv")
    assert set(coords.point.astype(str)) == {"3"}  # the job's analysis.tsne.points
    direct = tsne.embed(job, "seamless", point="3", seed=7, perplexity=10)
    assert np.allclose(coords[["x", "y"]].values, direct[["x", "y"]].values)


def test_run_passes_the_configured_seed_and_perplexity(job, monkeypatch, tmp_path):
    calls = capture(monkeypatch)
    tsne.run(job, tmp_path)
    assert [c["kwargs"] for c in calls] == [{"n_components": 2, "perplexity": 10.0, "random_state": 7,
                                             "init": "pca"}]


def test_family_colours_are_fixed():
    assert tsne.family_color("Indo-European") == tsne.family_color("Indo-European")
    assert tsne.family_color("Indo-European") != tsne.family_color("Austroasiatic")
    assert len({tsne.family_color(f) for f in tsne.FAMILIES}) == len(tsne.FAMILIES)
