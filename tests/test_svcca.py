"""crossrep.svcca against a literal implementation of google/svcca's algorithm, on varied data."""

import numpy as np
import pytest

from crossrep import measures
from crossrep.svcca import COMPLEMENT_TOLERANCE, pair_scores, prepare, reduced_basis, route, svcca, svcca_matrix
from reference_svcca import reference_svcca

pytestmark = pytest.mark.unit


def _data(kind, rng):
    n = 60
    if kind == "fewer_features":
        x = rng.standard_normal((n, 12)); y = x @ rng.standard_normal((12, 20)) + 0.5 * rng.standard_normal((n, 20))
    elif kind == "more_features":
        x = rng.standard_normal((n, 150)); y = np.tanh(x[:, :90] @ rng.standard_normal((90, 200)))
    elif kind == "rank_deficient":
        z = rng.standard_normal((n, 5))
        x = z @ rng.standard_normal((5, 40)); y = z[:, :3] @ rng.standard_normal((3, 30)) + 0.1 * rng.standard_normal((n, 30))
    elif kind == "constant_features":
        x = rng.standard_normal((n, 25)); x[:, [0, 7, 13]] = 3.0
        y = x[:, :18] * 2 + rng.standard_normal((n, 18)); y[:, 4] = -1.0
    elif kind == "different_widths":
        x = rng.standard_normal((n, 8)); y = np.hstack([x, rng.standard_normal((n, 40))])
    elif kind == "scaled_offsets":
        x = 1e3 * rng.standard_normal((n, 16)) + 50; y = 1e-3 * (x @ rng.standard_normal((16, 16))) - 7
    return x, y


KINDS = ["fewer_features", "more_features", "rank_deficient", "constant_features", "different_widths",
         "scaled_offsets"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["singular", "squared"])
@pytest.mark.parametrize("variance", [0.9, 0.99])
def test_svcca_matches_reference(kind, mode, variance):
    x, y = _data(kind, np.random.default_rng(KINDS.index(kind)))
    ours = svcca(x, y, variance=variance, mode=mode)
    ref = reference_svcca(x, y, variance=variance, mode=mode)
    assert abs(ours - ref) <= 1e-6, (ours, ref)
    assert 0.0 <= ours <= 1.0 + 1e-9


def test_identical_and_affine_invariance():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((80, 10))
    assert svcca(x, x) == pytest.approx(1.0, abs=1e-9)
    a = rng.standard_normal((10, 10))
    # CCA is invariant to invertible affine maps; the SVD step is not, so keep all directions here
    assert svcca(x, x @ a + 4.0, variance=1.0) == pytest.approx(1.0, abs=1e-6)  # epsilon shrinks weak directions


def test_modes_differ_and_keep_fewer_directions_with_singular_values():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((100, 30)) * np.linspace(3, 0.1, 30)
    k_singular = reduced_basis(x, 0.9, mode="singular").shape[1]
    k_squared = reduced_basis(x, 0.9, mode="squared").shape[1]
    assert k_squared < k_singular  # squares concentrate the energy in the top directions


def test_constant_representation_scores_zero_like_google():
    x = np.ones((30, 5)); y = np.random.default_rng(0).standard_normal((30, 5))
    assert svcca(x, y) == 0.0


def test_bad_input_errors():
    x = np.zeros((10, 3)); x[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        svcca(x, np.ones((10, 3)))
    with pytest.raises(ValueError, match="same sentences"):
        svcca(np.ones((10, 3)), np.ones((9, 3)))
    with pytest.raises(ValueError, match="variance_mode"):
        svcca(np.ones((10, 3)), np.ones((10, 3)), mode="cubed")


def test_matrix_equals_pairwise():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((40, w)) for w in (10, 30, 50)]
    ys = [x[:, :5] @ rng.standard_normal((5, 12)) + rng.standard_normal((40, 12)) for x in xs]
    sym = svcca_matrix(xs)
    assert np.isnan(np.diag(sym)).all()
    for i in range(3):
        for j in range(3):
            if i != j:
                assert sym[i, j] == pytest.approx(reference_svcca(xs[i], xs[j]), abs=1e-6)
    cross = svcca_matrix(xs, ys)
    for i in range(3):
        for j in range(3):
            assert cross[i, j] == pytest.approx(reference_svcca(xs[i], ys[j]), abs=1e-6)


def test_random_baseline_is_deterministic_and_below_related_data():
    sim = {"variance": 0.9, "epsilon": 1e-10, "variance_mode": "singular"}
    m = measures.get("svcca", **{k: sim[k] for k in ("variance", "epsilon", "variance_mode")})
    a = m.random_baseline(60, 16, 16, 3, seed=1)
    assert np.array_equal(a, m.random_baseline(60, 16, 16, 3, seed=1))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((60, 16))
    assert svcca(x, x @ rng.standard_normal((16, 16)) + 0.1 * rng.standard_normal((60, 16))) > a.max()


def test_batched_pairs_equal_pair_by_pair_on_edge_cases():
    rng = np.random.default_rng(11)
    n = 50
    z = rng.standard_normal((n, 6))
    xs = [
        rng.standard_normal((n, 20)),                                  # fewer features than sentences
        np.tanh(z @ rng.standard_normal((6, 120))),                    # more features than sentences
        z[:, :3] @ rng.standard_normal((3, 64)),                       # rank 3
        np.hstack([z, np.full((n, 5), 2.0)]),                          # constant features
        np.ones((n, 8)),                                               # no variance at all: scores 0
        z @ rng.standard_normal((6, 48)) + 0.3 * rng.standard_normal((n, 48)),
    ]
    ys = [x[:, : max(1, x.shape[1] // 2)] + 0.2 * rng.standard_normal((n, max(1, x.shape[1] // 2))) for x in xs]
    for mode in ("singular", "squared"):
        sym = svcca_matrix(xs, mode=mode)
        cross = svcca_matrix(xs, ys, mode=mode)
        for i in range(len(xs)):
            for j in range(len(xs)):
                if i != j:
                    assert sym[i, j] == pytest.approx(reference_svcca(xs[i], xs[j], mode=mode), abs=1e-6)
                assert cross[i, j] == pytest.approx(reference_svcca(xs[i], ys[j], mode=mode), abs=1e-6)
        assert np.all(sym[4, [0, 1, 2, 3, 5]] == 0.0)
    bases = [prepare(x) for x in xs]
    some = pair_scores(bases, bases, pairs=[(0, 0), (2, 5)], batch=1)
    assert some[0, 0] == pytest.approx(1.0) and some[2, 5] == pytest.approx(svcca(xs[2], xs[5]), abs=1e-12)
    assert np.isnan(some[1, 1])


def _wide(rng, n, d, strong=0.0):
    """Noise-like data whose kept directions fill most of the sentence space; a `strong` dominant direction
    makes the smallest kept singular values small relative to the largest."""
    x = rng.standard_normal((n, d)) + 0.3 * rng.standard_normal((n, 4)) @ rng.standard_normal((4, d))
    return x + strong * np.outer(rng.standard_normal(n), rng.standard_normal(d))


def test_complement_route_matches_reference_within_its_bound():
    rng = np.random.default_rng(21)
    n = 60
    xs = [_wide(rng, n, 200), _wide(rng, n, 50), _wide(rng, n, 300)[:, :120], _wide(rng, n, 59)]
    ys = [x[:, :30] + 0.5 * rng.standard_normal((n, 30)) for x in xs] + [_wide(rng, n, 70)]
    bx, by = [prepare(x) for x in xs], [prepare(y) for y in ys]
    assert all(b.complement is not None and b.complement.shape == (n, n - b.width) for b in bx)
    assert bx[1].vectors.shape[1] > n // 2  # 50 features < 60 sentences: complement from a complete QR
    for b in bx:
        assert np.abs(b.complement.T @ b.vectors).max() < 1e-12
        assert np.abs(b.complement.T @ b.complement - np.eye(n - b.width)).max() < 1e-12
    sym, cross = pair_scores(bx), pair_scores(bx, by)
    routed = 0
    for i in range(len(xs)):
        for j in range(len(ys)):
            through, x, y = route(bx[i], by[j])
            routed += through
            bound = 1 - (1 - x.slack) * (1 - y.slack)
            ref = reference_svcca(xs[i], ys[j])
            assert abs(cross[i, j] - ref) <= bound + 1e-12, (i, j, cross[i, j] - ref, bound)
            if j < len(xs) and i != j:
                assert abs(sym[i, j] - reference_svcca(xs[i], xs[j])) <= COMPLEMENT_TOLERANCE + 1e-12
    assert routed >= 4


def test_complement_route_is_refused_where_the_scales_could_move_the_score():
    rng = np.random.default_rng(22)
    x, y = _wide(rng, 60, 200, strong=3.0), _wide(rng, 60, 200, strong=3.0)
    bx, by = prepare(x), prepare(y)
    assert bx.complement is not None and bx.slack > COMPLEMENT_TOLERANCE
    assert not route(bx, by)[0]
    assert pair_scores([bx], [by])[0, 0] == pytest.approx(svcca(x, y), abs=1e-12)


def test_no_complement_where_it_is_wider_than_the_basis():
    rng = np.random.default_rng(23)
    x = rng.standard_normal((60, 5)) @ rng.standard_normal((5, 100))
    assert prepare(x).complement is None
    assert prepare(x).width == 5
