"""The report's test of speech retrieving its own transcript above chance (analysis.readouts.above_chance): its
false "above chance" rate on null data, with languages independent and with the sentences' structure shared by
every language (the dependence the shared-sentence component is for), and its power on a planted correspondence.
The test is two-sided and only "above" is ever claimed; near chance the accuracies are skewed (a handful of hits
per language), which makes the upper tail conservative: the rate is asserted at most alpha / 2."""

import numpy as np
import pytest

from crossrep import retrieve, stats
from crossrep.analysis.readouts import above_chance, shared_sentence_component

pytestmark = pytest.mark.unit

L, N, D, B = 8, 40, 16, 200


def simulate(seed: int, kind: str, signal: float = 0.0):
    rng = np.random.default_rng(seed)
    speech_shared, text_shared = rng.standard_normal((N, D)), rng.standard_normal((N, D))
    acc, boot = np.empty(L), np.empty((B, L))
    draws = [stats.resample(0, N, b) for b in range(B)]
    for lang in range(L):
        if kind == "independent":
            speech, text = rng.standard_normal((N, D)), rng.standard_normal((N, D))
        else:  # each language's speech and text share their modality's sentence structure with every language
            speech = speech_shared + signal * text_shared + rng.standard_normal((N, D))
            text = text_shared + rng.standard_normal((N, D))
        best = retrieve.retrieved(retrieve.prepare(speech, False), retrieve.prepare(text, False), ("cosine",),
                                  4)["cosine"][0]
        hits = best == np.arange(N)
        acc[lang] = hits.mean()
        boot[:, lang] = [hits[d].mean() for d in draws]
    return above_chance(acc, np.full(L, 1 / N), boot)


@pytest.mark.parametrize("kind", ["independent", "shared-structure"])
def test_false_above_chance_rate_on_null_data(kind):
    seeds = 400
    tests = [simulate(s, kind) for s in range(seeds)]
    above = np.mean([t.p < 0.05 and t.estimate > 0 for t in tests])
    assert above <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / seeds), above
    for t in tests[:20]:  # the interval excludes chance exactly when the test rejects
        low, high = t.interval(0.05)
        assert (t.p < 0.05) == (low > 0 or high < 0)


def test_power_on_a_planted_correspondence():
    tests = [simulate(1000 + s, "shared-structure", signal=0.5) for s in range(60)]
    assert np.mean([t.p < 0.05 and t.estimate > 0 for t in tests]) >= 0.9


def test_shared_component_is_the_covariance_part():
    rng = np.random.default_rng(0)
    common = rng.standard_normal((500, 1))
    boot = common + 0.5 * rng.standard_normal((500, 4))  # languages share var 1, each has its own 0.25
    comp = shared_sentence_component(boot)
    # var(mean) = 1 + 0.25 / 4; minus own parts (1.25 * 4) / 16 leaves the off-diagonal share 12 / 16
    assert abs(comp.variance - 0.75) < 0.15
