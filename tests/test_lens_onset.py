"""The logit lens's onset test (analysis.lens) on synthetic lens Datasets: its error rate over many seeds of every
kind of null (no correspondence; per-language effects; per-sentence differences that every language shares, the
dependence that makes languages not independent), and its power on a planted onset."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from crossrep.analysis import lens

pytestmark = pytest.mark.unit

LANGS, SENTENCES, POINTS = 10, 30, 5
ALPHA = 0.05


def synthetic(seed: int, kind: str, effect: float = 0.0, onset: int = POINTS) -> xr.Dataset:
    """Own and chance scores per (language, sentence, point); their difference has mean `effect` from point
    `onset` on and 0 before, plus the null's structure."""
    g = np.random.default_rng(seed)
    shape = (LANGS, SENTENCES, POINTS)
    base = g.normal(0, 1, shape)
    diff = g.normal(0, 0.5, shape)
    if kind == "languages":
        diff += g.normal(0, 0.4, (LANGS, 1, 1))
    elif kind == "sentences":  # the same sentences in every language: a shared per-sentence difference
        diff += g.normal(0, 0.4, (1, SENTENCES, POINTS))
    diff[..., onset:] += effect
    coords = {"lang": [f"l{i}" for i in range(LANGS)], "sentence": np.arange(SENTENCES),
              "point": [str(i) for i in range(POINTS)], "point_depth": ("point", np.arange(POINTS, dtype=float))}
    dims = ("lang", "sentence", "point")
    data = {}
    for metric in lens.METRICS:
        data[metric] = (dims, base + diff)
        data[f"chance_{metric}"] = (dims, base)
    return xr.Dataset(data, coords=coords, attrs={"text_input": "joint"})


@pytest.mark.parametrize("kind", ["none", "languages", "sentences"])
def test_no_onset_is_claimed_more_often_than_alpha_under_every_null(kind):
    seeds = 200
    claimed = above = 0
    for seed in range(seeds):
        t = lens.onset_tests(synthetic(seed, kind), "m", ALPHA, seed=seed)
        claimed += bool(t[t.metric == "recall_10"].holds.any())  # Holm: the family-wise rate over points
        above += int(t[(t.metric == "recall_10") & (t.point == "2")].holds.iloc[0])
    # binomial upper limits (3 sd) over 200 seeds: alpha 0.05 -> 0.096, alpha/2 (one side) -> 0.058
    assert claimed / seeds <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / seeds), (kind, claimed)
    assert above / seeds <= ALPHA / 2 + 3 * np.sqrt(ALPHA / 2 * (1 - ALPHA / 2) / seeds), (kind, above)


def test_the_sentence_component_is_what_keeps_shared_sentences_calibrated():
    """Without the shared-sentence part of the variance, the language jackknife alone rejects far too often when
    every language reads the same sentences: the test's extra component is needed, not decoration."""
    from crossrep import stats

    naive = 0
    for seed in range(200):
        ds = synthetic(seed, "sentences")
        own, chance = lens.language_means(ds, "recall_10")
        d = own[:, 2] - chance[:, 2]
        t = stats.t_test(float(d.mean()), stats.jackknife(lambda idx: float(d[idx].mean()), d.size))
        naive += t.p < ALPHA
    assert naive / 200 > 2 * ALPHA


def test_a_planted_onset_is_found_at_its_point_with_an_interval_that_agrees():
    found = 0
    for seed in range(50):
        t = lens.onset_tests(synthetic(seed, "sentences", effect=0.6, onset=3), "m", ALPHA, seed=seed)
        r = t[t.metric == "logprob"]
        found += r[r.onset].point.tolist() == ["3"]
        for _, row in r.iterrows():  # the interval excludes 0 exactly when Holm rejects
            if np.isfinite(row.low):
                assert (row.low > 0 or row.high < 0) == (row.p_adjusted < ALPHA), row
    assert found >= 45
