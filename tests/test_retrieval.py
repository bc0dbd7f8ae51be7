"""crossrep.retrieval against a brute-force implementation of cosine and ratio-margin retrieval (Artetxe and
Schwenk 2019), written entry by entry; blocks, ties and centring."""

import numpy as np
import pytest

import crossrep

pytestmark = pytest.mark.unit


def reference(src, tgt, scoring, k, center):
    """Every score computed on its own; the best target the first of the highest."""
    if center:
        src, tgt = src - src.mean(axis=0), tgt - tgt.mean(axis=0)
    n = len(src)

    def cos(u, v):
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    sims = [[cos(src[i], tgt[j]) for j in range(n)] for i in range(n)]
    if scoring == "margin":
        fwd = [np.mean(sorted(sims[i], reverse=True)[:k]) for i in range(n)]
        bwd = [np.mean(sorted((sims[i][j] for i in range(n)), reverse=True)[:k]) for j in range(n)]
        sims = [[sims[i][j] / ((fwd[i] + bwd[j]) / 2) for j in range(n)] for i in range(n)]
    best = []
    for row in sims:
        top = max(row)
        best.append(next(j for j, v in enumerate(row) if v == top))
    best = np.array(best)
    return float((best == np.arange(n)).mean()), best


@pytest.mark.parametrize("scoring", ["cosine", "margin"])
@pytest.mark.parametrize("center", [False, True])
def test_equals_brute_force_in_any_block_size(scoring, center):
    rng = np.random.default_rng(3)
    shared = rng.standard_normal((60, 16))
    src = shared + 0.8 * rng.standard_normal((60, 16)) + 1.0  # a common offset: what centring removes
    tgt = shared + 0.8 * rng.standard_normal((60, 16))
    want, want_idx = reference(src, tgt, scoring, 4, center)
    for block in (7, 60, 256):
        got, idx = crossrep.retrieval(src, tgt, scoring=scoring, k=4, center=center, indices=True, block=block)
        assert got == want and np.array_equal(idx, want_idx)
    assert 0.2 < want < 1.0  # neither trivial nor impossible: the comparison means something


def test_chance_ties_and_centring():
    rng = np.random.default_rng(4)
    noise = [crossrep.retrieval(rng.standard_normal((200, 8)), rng.standard_normal((200, 8))) for _ in range(20)]
    assert abs(np.mean(noise) - 1 / 200) < 0.01  # unrelated arrays: chance 1/N
    x = rng.standard_normal((10, 4))
    tgt = np.repeat(x[:5], 2, axis=0)  # targets 2i and 2i + 1 are equal
    acc, idx = crossrep.retrieval(tgt, tgt, indices=True)
    assert np.array_equal(idx, np.repeat(np.arange(0, 10, 2), 2)) and acc == 0.5  # ties: the lowest index
    shared = rng.standard_normal((100, 8))
    a, b = shared + 0.3 * rng.standard_normal((100, 8)) + 5.0, shared + 0.3 * rng.standard_normal((100, 8)) - 5.0
    assert crossrep.retrieval(a, b, center=True) > crossrep.retrieval(a, b) + 0.5  # offsets hide the match
    with pytest.raises(ValueError, match="scoring: expected one of cosine, margin"):
        crossrep.retrieval(a, b, scoring="csls")
    with pytest.raises(ValueError, match="k: between 1 and 99"):
        crossrep.retrieval(a, b, scoring="margin", k=100)


def predicted_accuracy(n: int, signal: float) -> float:
    """P(correct) when targets are orthogonal rows of one norm r and sources add Gaussian noise of size sigma,
    signal = r / sigma: row i is found iff z_ij - z_ii < signal for every j != i (z iid standard normal, the noise's
    projections on the targets), integrated over z_ii."""
    from scipy import integrate, stats

    return integrate.quad(lambda z: stats.norm.pdf(z) * stats.norm.cdf(z + signal) ** (n - 1), -10, 10)[0]


def test_planted_noise_gives_the_predicted_accuracy():
    n, d, r, sigma = 100, 128, 3.0, 1.2
    rng = np.random.default_rng(5)
    got = []
    for _ in range(30):
        q = np.linalg.qr(rng.standard_normal((d, d)))[0][:n]  # orthonormal rows
        tgt = r * q
        src = tgt + sigma * rng.standard_normal((n, d))
        got.append(crossrep.retrieval(src, tgt))
    want = predicted_accuracy(n, r / sigma)
    se = np.sqrt(want * (1 - want) / (30 * n))
    assert 0.3 < want < 0.9 and abs(np.mean(got) - want) < 4 * se, (np.mean(got), want, se)


def test_pure_noise_within_binomial_limits_of_chance():
    rng = np.random.default_rng(6)
    n, reps = 200, 25
    for scoring in ("cosine", "margin"):
        hits = sum(crossrep.retrieval(rng.standard_normal((n, 8)), rng.standard_normal((n, 8)), scoring=scoring) * n
                   for _ in range(reps))
        mean, sd = reps, np.sqrt(reps * n * (1 / n) * (1 - 1 / n))  # hits ~ Binomial(reps * n, 1 / n)
        assert abs(hits - mean) < 3.5 * sd, (scoring, hits, mean, sd)


def test_margin_beats_cosine_on_a_planted_hub():
    rng = np.random.default_rng(7)
    n, d = 80, 32
    shared = rng.standard_normal((n, d))
    src = shared + 0.9 * rng.standard_normal((n, d))
    tgt = shared + 0.9 * rng.standard_normal((n, d))
    hub = rng.standard_normal(d)
    tgt[0] = hub / np.linalg.norm(hub)  # target 0 points where every source leans: a hub
    src += 4.0 * tgt[0]
    _, cos_idx = crossrep.retrieval(src, tgt, indices=True)
    _, mar_idx = crossrep.retrieval(src, tgt, scoring="margin", indices=True)
    assert (cos_idx == 0).sum() >= 30 and (mar_idx == 0).sum() <= 8  # the hub draws cosine, not the margin
    assert (mar_idx == np.arange(n)).mean() > (cos_idx == np.arange(n)).mean() + 0.2


@pytest.mark.parametrize("block", [9, 256])
def test_one_pass_gives_both_directions(block):
    from crossrep.retrieve import prepare, retrieved

    rng = np.random.default_rng(8)
    shared = rng.standard_normal((50, 12))
    a, b = shared + rng.standard_normal((50, 12)), shared + rng.standard_normal((50, 12))
    got = retrieved(prepare(a, False), prepare(b, False), ("cosine", "margin"), 4, block)
    for scoring in ("cosine", "margin"):
        assert np.array_equal(got[scoring][0], reference(a, b, scoring, 4, False)[1])
        assert np.array_equal(got[scoring][1], reference(b, a, scoring, 4, False)[1])
