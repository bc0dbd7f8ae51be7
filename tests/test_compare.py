"""crossrep.compare on synthetic arrays: a planted relation, its intervals' coverage and the null's error rate."""

import numpy as np
import pytest

import crossrep
from crossrep import measures, stats

pytestmark = pytest.mark.unit


def test_compare_gives_chance_p_value_and_intervals_for_a_planted_relation():
    rng = np.random.default_rng(0)
    shared = rng.standard_normal((150, 6))
    x = shared @ rng.standard_normal((6, 40)) + 0.5 * rng.standard_normal((150, 40))
    y = shared @ rng.standard_normal((6, 30)) + 0.5 * rng.standard_normal((150, 30))
    got = crossrep.compare(x, y, permutations=50, bootstrap=40, seed=3)
    assert got.measure == measures.get("svcca")
    assert got.chance == pytest.approx(got.null.mean()) and len(got.null) == 50 and len(got.boot) == 40
    assert got.adjusted == pytest.approx((got.score - got.chance) / (1 - got.chance))
    assert got.p_value == pytest.approx(1 / 51)  # every shuffle scores below the planted relation
    assert got.low < got.score < got.high and got.high - got.score == pytest.approx(got.score - got.low)
    test = stats.t_test(got.score, [stats.group_component(got.jack)])
    assert (got.low, got.high) == test.interval(0.05) and len(got.jack) == 10
    assert (got.boot_low, got.boot_high) == tuple(stats.interval(got.boot, 0.95))
    noise = crossrep.compare(rng.standard_normal((150, 40)), rng.standard_normal((150, 30)), permutations=50)
    assert noise.p_value > 0.05 and abs(noise.adjusted) < 0.1  # independent arrays: at chance
    assert noise.boot_low is None and noise.boot_high is None
    knn = crossrep.compare(x, y, measure="mknn", knn=5, permutations=5)
    assert knn.measure.knn == 5 and knn.score == pytest.approx(measures.get("mknn", knn=5).score(x, y))
    with pytest.raises(ValueError, match="same rows"):
        crossrep.compare(x, y[:100])
    with pytest.raises(ValueError, match="k: not a parameter of mknn"):
        crossrep.compare(x, y, measure="mknn", k=5)
    with pytest.raises(ValueError, match="jackknife: between 2 and 75 sentence groups"):
        crossrep.compare(x, y, jackknife=1)


def _draw(seed, loadings, n=120):
    r = np.random.default_rng(seed)
    s = r.standard_normal((n, 6))
    return [s @ w + 1.5 * r.standard_normal((n, w.shape[1])) for w in loadings]


@pytest.mark.parametrize("measure, lowest, highest", [("cka", 0.89, 0.99), ("svcca", 0.93, 1.0)])
def test_compare_interval_covers_the_expected_score(measure, lowest, highest):
    """Coverage over 100 samples of one generating model, the truth the mean score of 300 more: the jackknife
    interval is calibrated for CKA and conservative for SVCCA (its kept dimensions jump between replicates; the
    jackknife SE is 1.8x the score's SD there, measured over 150 samples, docs/statistics.md)."""
    rng = np.random.default_rng(123)
    loadings = [rng.standard_normal((6, 40)), rng.standard_normal((6, 30))]
    m = measures.get(measure)
    truth = np.mean([m.score(*_draw(10_000 + i, loadings)) for i in range(300)])
    hits = [(c.low <= truth <= c.high) for c in
            (crossrep.compare(*_draw(i, loadings), measure=measure, permutations=2, seed=i) for i in range(100))]
    assert lowest <= np.mean(hits) <= highest


def test_compare_p_value_is_calibrated_without_correspondence():
    """Independent arrays over 200 seeds: with K = 19 shuffles, P(p <= 0.05) is exactly 1/20 under the null."""
    rng = np.random.default_rng(5)
    ps = np.array([crossrep.compare(rng.standard_normal((40, 8)), rng.standard_normal((40, 6)), measure="cka",
                                    permutations=19, jackknife=2, seed=s).p_value for s in range(200)])
    assert 0.015 <= (ps <= 0.05).mean() <= 0.097  # 1/20 within three binomial standard errors


def test_import_crossrep_is_light():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import sys, crossrep; print(sorted(m for m in ('torch', 'xarray', "
                                                 "'pandas', 'zarr') if m in sys.modules))"],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr
