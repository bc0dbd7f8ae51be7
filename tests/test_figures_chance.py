"""The figures draw chance as the findings use it: the permutation null mean is the chance line of Figs. 2 and 3
(the random-Gaussian baseline only named as what it is), and Fig. 5 carries a chance level per language, in its
CSV equal to the null means of the similarity Dataset; on a real reduction of the tiny model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crossrep.analysis import figures, tables

pytestmark = pytest.mark.model

LANGS = ["eng", "deu", "khm"]


@pytest.fixture(scope="module")
def similarity(tmp_path_factory, demo_root, tiny):
    from crossrep.results import model_dataset
    from crossrep.store import ActivationStore
    from tiny_store import extracted_job

    job = extracted_job(tmp_path_factory.mktemp("chance"), demo_root, tiny, **{
        "data.languages": LANGS, "similarity.permutations": 2})
    return model_dataset(job, ActivationStore(job.out), "seamless").sel(measure="svcca")


@pytest.fixture(scope="module")
def drawn(similarity, tmp_path_factory):
    """Figs. 2, 3 and 5 drawn, with each figure's legend labels (read before `_save` closes it)."""
    out = tmp_path_factory.mktemp("figures")
    labels, save = {}, figures._save
    mp = pytest.MonkeyPatch()

    def keep_labels(fig, out_, name, frame=None):
        labels[name] = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        save(fig, out_, name, frame)

    mp.setattr(figures, "_save", keep_labels)
    try:
        figures.fig2({"seamless": similarity}, out, "", "svcca", 50, 0)
        figures.fig3({"seamless": similarity}, out, "", "svcca")
        figures.fig5({"seamless": similarity}, out, "", "svcca")
    finally:
        mp.undo()
    return out, labels


def test_fig2_and_fig3_draw_the_permutation_null_as_chance(drawn):
    out, labels = drawn
    assert figures.CHANCE == "chance (permutation null)"
    assert figures.CHANCE in labels["fig2_crossmodal"]
    assert any(figures.CHANCE in label for label in labels["fig3_crosslingual"])
    for name in ("fig2_crossmodal", "fig3_crosslingual"):
        random = [label for label in labels[name] if "random" in label]
        assert random and all("(not the chance level)" in label for label in random), labels[name]
        assert not any(label.endswith("permutation null") and "chance" not in label for label in labels[name])
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 0
    fig2 = pd.read_csv(out / "fig2_crossmodal.csv")  # the chance line is the CSV's null_mean, as before
    assert {"pair", "depth", "group", "mean", "null_mean", "baseline", "model"} <= set(fig2.columns)
    fig3 = pd.read_csv(out / "fig3_crosslingual.csv")
    assert {"modality", "point", "depth", "mean", "null_mean", "baseline", "model"} <= set(fig3.columns)


def test_fig5_csv_carries_the_chance_levels_of_the_dataset(drawn, similarity):
    out, labels = drawn
    ds = similarity
    assert any(figures.CHANCE in label for label in labels["fig5_last_layer"])
    frame = pd.read_csv(out / "fig5_last_layer.csv")
    old = ["lang", "level", "crossmodal", "crossmodal_low", "crossmodal_high", "text_min", "text_max",
           "speech_min", "speech_max", "text_speech_min", "text_speech_max", "model", "pair"]
    assert set(old) <= set(frame.columns)  # the columns other code reads stay
    pair = tables.fig5_pair(ds)
    assert (frame.pair.astype(str) == pair).all()
    t_point = str(ds.pair_text_point.sel(pair=pair).values)
    s_point = str(ds.pair_speech_point.sel(pair=pair).values)
    text = ds.text_null_mean.sel(text_point=t_point)
    speech = ds.speech_null_mean.sel(speech_point=s_point)
    ts = ds.text_speech_null_mean.sel(pair=pair)
    assert list(frame.lang) == [str(lang) for lang in ds.lang.values]
    for row in frame.itertuples():
        others = [str(lang) for lang in ds.lang.values if str(lang) != row.lang]
        cm = float(ds.crossmodal_null_mean.sel(pair=pair, lang=row.lang))
        assert row.crossmodal_chance == pytest.approx(cm, abs=1e-6)
        assert row.text_chance == pytest.approx(float(text.sel(lang_a=row.lang, lang_b=others).mean()), abs=1e-6)
        assert row.speech_chance == pytest.approx(float(speech.sel(lang_a=row.lang, lang_b=others).mean()),
                                                  abs=1e-6)
        assert row.text_speech_chance == pytest.approx(float(ts.sel(lang_a=row.lang, lang_b=others).mean()),
                                                       abs=1e-6)
    # chance is what the findings subtract: the adjusted score is (score - chance) / (1 - chance)
    adjusted = (frame.crossmodal - frame.crossmodal_chance) / (1 - frame.crossmodal_chance)
    expected = ds.crossmodal_adjusted.sel(pair=pair, lang=list(frame.lang)).values
    assert np.allclose(adjusted, expected, atol=1e-5)
    assert np.isfinite(frame[["crossmodal_chance", "text_chance", "speech_chance", "text_speech_chance"]]).all().all()
