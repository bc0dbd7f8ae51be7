"""Linear probes: a planted language signal is found, a label without one stays at chance, folds never share a
sentence, and the permutation p-value's error rate on null data (with and without sentence structure) is its
level."""

import numpy as np
import pytest

from crossrep import probes
from crossrep.probes import predictions, probe

pytestmark = pytest.mark.unit

L, M, D = 4, 12, 16  # languages, sentences, features


def rows(rng, language_signal: float, sentence_signal: float):
    """L languages x M sentences: a per-language mean (the effect), a per-sentence mean shared by its languages
    (structure), noise."""
    lang_means, sent_means = rng.standard_normal((L, D)), rng.standard_normal((M, D))
    labels, groups = np.repeat(np.arange(L), M), np.tile(np.arange(M), L)
    x = (language_signal * lang_means[labels] + sentence_signal * sent_means[groups]
         + rng.standard_normal((L * M, D)))
    return x, labels, groups


def test_planted_language_signal_is_found():
    x, labels, groups = rows(np.random.default_rng(0), 3.0, 1.0)
    got = probe(x, labels, groups, folds=4, permutations=199, bootstrap=200, c=1.0, seed=0, name="planted")
    assert got.accuracy >= 0.98 and got.p == 1 / 200
    assert abs(got.chance - 1 / L) < 0.02
    low, high = np.quantile(got.boot, [0.025, 0.975])
    assert 0.9 <= low <= got.accuracy <= high <= 1.0


def test_folds_never_share_a_sentence():
    """A label that belongs to the sentence (the same in all its rows) is learnable only by memorising sentences:
    grouped folds leave it at chance."""
    rng = np.random.default_rng(1)
    sentences = 40
    groups = np.tile(np.arange(sentences), L)
    label_of = rng.integers(0, 2, sentences)
    x = 4.0 * rng.standard_normal((sentences, D))[groups] + rng.standard_normal((len(groups), D))
    acc = (predictions(x, label_of[groups], groups, 5, 1.0) == label_of[groups]).mean()
    # the sentences are the units: 40 Bernoulli(1/2) sentence outcomes
    assert abs(acc - 0.5) < 3 * np.sqrt(0.25 / sentences), acc


@pytest.mark.parametrize("sentence_signal", [0.0, 2.0], ids=["no-correspondence", "sentence-structure"])
def test_p_value_error_rate_on_null_data(sentence_signal):
    """200 null data sets (no language signal): P(p <= 0.05) within 3 binomial SE of 0.05, chance 1/L."""
    ps, chances, accs = [], [], []
    for seed in range(200):
        x, labels, groups = rows(np.random.default_rng(100 + seed), 0.0, sentence_signal)
        got = probe(x, labels, groups, folds=4, permutations=99, bootstrap=0, c=1.0, seed=seed, name="null")
        ps.append(got.p), chances.append(got.chance), accs.append(got.accuracy)
    rate = np.mean(np.array(ps) <= 0.05)
    assert abs(rate - 0.05) < 3 * np.sqrt(0.05 * 0.95 / 200), rate
    assert abs(np.mean(chances) - 1 / L) < 0.005
    assert abs(np.mean(accs) - 1 / L) < 3 * np.std(accs) / np.sqrt(200)  # the probe itself is at chance


def test_permutation_chance_equals_refitting_on_permuted_labels():
    """The held-out-label null has the chance level of refitting on labels permuted within sentences."""
    rng = np.random.default_rng(2)
    x, labels, groups = rows(rng, 0.4, 1.0)
    refits = []
    for k in range(40):
        shuffled = labels.copy()
        for g in range(M):
            where = np.flatnonzero(groups == g)
            shuffled[where] = labels[rng.permutation(where)]
        refits.append((predictions(x, shuffled, groups, 4, 1.0) == shuffled).mean())
    got = probe(x, labels, groups, folds=4, permutations=999, bootstrap=0, c=1.0, seed=0, name="refit")
    assert abs(np.mean(refits) - got.chance) < 3 * np.std(refits) / np.sqrt(40) + 0.005
    assert abs(got.chance - 1 / L) < 0.01


def test_permuted_accuracy_keeps_each_group_s_labels():
    labels, groups = np.array([0, 1, 2, 0, 1, 2]), np.array([5, 5, 5, 9, 9, 9])
    predicted = labels.copy()
    null = probes.permuted_accuracy(predicted, labels, groups, 6000, np.random.default_rng(0))
    # two independent uniform permutations of 3: matches per group are 3 (1/6), 1 (1/2) or 0 (1/3)
    assert abs(null.mean() - 1 / 3) < 0.01 and set(np.round(null * 6).astype(int)) <= {0, 1, 2, 3, 4, 6}


def test_nan_activations_are_refused():
    x, labels, groups = rows(np.random.default_rng(3), 1.0, 0.0)
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        probe(x, labels, groups, folds=4, permutations=9, bootstrap=0, c=1.0, seed=0, name="nan")
