"""PWCCA, CKA, debiased CKA and mutual kNN against straightforward implementations written from their definitions."""

from pathlib import Path

import numpy as np
import pytest

from crossrep import measures
from reference_svcca import reference_pwcca, reference_svcca

pytestmark = pytest.mark.unit

SIM = {"variance": 0.9, "epsilon": 1e-10, "variance_mode": "singular", "knn": 5}


def measure(name, sim=SIM):
    """The measure with those of `sim`'s settings that are its parameters."""
    params = measures.get(name).params()
    return measures.get(name, **{k: v for k, v in sim.items() if k in params})


def prepare(name, x, sim=SIM):
    return measure(name, sim).prepare(x)


def pair_matrix(name, reps_a, reps_b, pairs):
    return measures.get(name).scores(reps_a, reps_a if reps_b is None else reps_b, pairs)


def random_baseline(name, n, width_a, width_b, repeats, seed, sim=SIM):
    return measure(name, sim).random_baseline(n, width_a, width_b, repeats, seed)


def hsic_biased(k, l):
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def hsic_unbiased(k, l):
    """Song et al. (2012), eq. 5, on raw Gram matrices with zeroed diagonals."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3))


def cka_reference(x, y, debiased):
    k, l = x @ x.T, y @ y.T
    f = hsic_unbiased if debiased else hsic_biased
    return f(k, l) / np.sqrt(f(k, k) * f(l, l))


def mknn_reference(x, y, k):
    def neighbours(z):
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        out = []
        for i in range(len(z)):
            sims = z @ z[i]
            sims[i] = -np.inf
            out.append(set(np.argsort(-sims, kind="stable")[:k]))
        return out

    return float(np.mean([len(a & b) / k for a, b in zip(neighbours(x), neighbours(y))]))


def _pairs(rng):
    n = 40
    z = rng.standard_normal((n, 6))
    yield rng.standard_normal((n, 12)), rng.standard_normal((n, 30))
    yield z @ rng.standard_normal((6, 50)) + 3.0, np.tanh(z @ rng.standard_normal((6, 20)))
    yield z @ rng.standard_normal((6, 8)), z[:, :2] @ rng.standard_normal((2, 70)) + 0.1 * rng.standard_normal((n, 70))


@pytest.mark.parametrize("measure", ["cka", "cka_debiased", "mknn"])
def test_measures_match_references(measure):
    rng = np.random.default_rng(4)
    for x, y in _pairs(rng):
        a, b = prepare(measure, x, SIM), prepare(measure, y, SIM)
        ours = pair_matrix(measure, [a], [b], [(0, 0)])[0, 0]
        if measure == "mknn":
            ref = mknn_reference(x, y, SIM["knn"])
        else:
            ref = cka_reference(x, y, debiased=measure == "cka_debiased")
        assert ours == pytest.approx(ref, abs=1e-9), (measure, ours, ref)


@pytest.mark.parametrize("measure", ["svcca", "pwcca", "cka", "cka_debiased", "mknn"])
def test_identity_and_batching(measure):
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((30, w)) for w in (5, 20, 60)]
    reps = [prepare(measure, x, SIM) for x in xs]
    assert pair_matrix(measure, reps, None, [(0, 0)])[0, 0] == pytest.approx(1.0, abs=1e-9)
    pairs = [(0, 1), (0, 2), (1, 2)]
    together = pair_matrix(measure, reps, None, pairs)
    for i, j in pairs:
        assert together[i, j] == pytest.approx(pair_matrix(measure, [reps[i]], [reps[j]], [(0, 0)])[0, 0], abs=1e-12)


def test_debiased_cka_removes_the_small_sample_bias():
    biased = random_baseline("cka", 30, 64, 64, 5, seed=1, sim=SIM).mean()
    debiased = random_baseline("cka_debiased", 30, 64, 64, 5, seed=1, sim=SIM).mean()
    assert biased > 0.3 and abs(debiased) < 0.1


def _pwcca_cases(rng):
    """Pairs where kx + ky stays at or below the sentence count, so no canonical correlation is tied at 1."""
    n = 80
    z = rng.standard_normal((n, 6))
    yield rng.standard_normal((n, 12)), rng.standard_normal((n, 30)), 0.9
    yield rng.standard_normal((n, 30)), rng.standard_normal((n, 12)), 0.9  # x has more directions: y weighs
    yield z @ rng.standard_normal((6, 50)) + 3.0, np.tanh(z @ rng.standard_normal((6, 20))), 0.9
    yield (z @ rng.standard_normal((6, 8)),
           z[:, :2] @ rng.standard_normal((2, 70)) + 0.1 * rng.standard_normal((n, 70)), 0.9)
    yield rng.standard_normal((n, 200)), z @ rng.standard_normal((6, 300)) + rng.standard_normal((n, 300)), 0.5


@pytest.mark.parametrize("mode", ["singular", "squared"])
def test_pwcca_matches_reference(mode):
    sim = dict(SIM, variance_mode=mode)
    for x, y, variance in _pwcca_cases(np.random.default_rng(11)):
        sim["variance"] = variance
        a, b = prepare("pwcca", x, sim), prepare("pwcca", y, sim)
        assert a[0].shape[1] + b[0].shape[1] <= x.shape[0]
        ours = pair_matrix("pwcca", [a], [b], [(0, 0)])[0, 0]
        ref = reference_pwcca(x, y, variance, SIM["epsilon"], mode)
        assert ours == pytest.approx(ref, abs=1e-9), (ours, ref)
        assert pair_matrix("pwcca", [b], [a], [(0, 0)])[0, 0] == pytest.approx(ours, abs=1e-12)


def test_pwcca_weighs_the_directions_that_carry_variance():
    """Shared strong directions (noisy, so no correlation is tied at 1) and unrelated weak ones: PWCCA sits
    above the plain mean (SVCCA)."""
    rng = np.random.default_rng(5)
    n = 120
    shared = rng.standard_normal((n, 3)) * 10
    x, y = (np.hstack([shared + rng.standard_normal((n, 3)), rng.standard_normal((n, 9))])
            @ np.linalg.qr(rng.standard_normal((12, 12)))[0] for _ in range(2))
    sim = dict(SIM, variance=0.99)
    pw = pair_matrix("pwcca", [prepare("pwcca", x, sim)], [prepare("pwcca", y, sim)], [(0, 0)])[0, 0]
    mean = reference_svcca(x, y, 0.99)
    assert pw > mean + 0.2, (pw, mean)  # measured: 0.73 against 0.43
    assert pw == pytest.approx(reference_pwcca(x, y, 0.99), abs=1e-9)


def test_pwcca_of_a_constant_representation_is_zero():
    rng = np.random.default_rng(2)
    a = prepare("pwcca", np.ones((20, 5)), SIM)
    b = prepare("pwcca", rng.standard_normal((20, 5)), SIM)
    assert pair_matrix("pwcca", [a], [b], [(0, 0)])[0, 0] == 0.0


@pytest.mark.parametrize("name", ["svcca", "pwcca", "cka", "cka_debiased", "mknn", "procrustes", "rsa", "cknna"])
def test_permuted_prepared_form_equals_preparing_the_permuted_rows(name):
    """The permutation null permutes prepared forms; that must equal preparing the shuffled activations."""
    rng = np.random.default_rng(7)
    sim = {"variance": 0.9, "epsilon": 1e-10, "variance_mode": "singular", "knn": 4}
    x, y = rng.standard_normal((80, 12)), rng.standard_normal((80, 50))
    y[:, :6] += 2 * x[:, :6]
    m = measure(name, sim)
    order = rng.permutation(80)
    rx, ry = m.prepare(x), m.prepare(y)
    direct = m.scores([rx], [m.prepare(y[order])], [(0, 0)])[0, 0]
    permuted = m.scores([rx], [m.permute(ry, order)], [(0, 0)])[0, 0]
    unshuffled = m.scores([rx], [ry], [(0, 0)])[0, 0]
    assert permuted == pytest.approx(direct, abs=1e-7)  # two SVDs of the same data, in other row orders
    assert abs(unshuffled - permuted) > 0.05  # the shuffle breaks the planted relation


def test_registry_names_every_measure_once():
    assert tuple(measures.REGISTRY)[:5] == ("svcca", "pwcca", "cka", "cka_debiased", "mknn")
    with pytest.raises(ValueError, match="unknown measure 'cca'.*svcca"):
        measures.get("cca")


def test_measures_own_their_parameters_and_check_them():
    assert measures.get("mknn", knn=3).settings() == {"name": "mknn", "knn": 3}
    assert measures.get("svcca").params() == {"variance": 0.9, "epsilon": 1e-10, "variance_mode": "singular"}
    assert measures.get("cka").params() == {}
    for name, params, message in (("mknn", {"knn": 0}, r"knn: expected a whole number of neighbours >= 1, got 0"),
                                  ("svcca", {"variance": 1.5}, r"variance: expected a share in \(0, 1\], got 1.5"),
                                  ("pwcca", {"variance_mode": "cubic"}, r"variance_mode: expected one of singular"),
                                  ("cka", {"knn": 3}, r"knn: not a parameter of cka \(its parameters: none\)")):
        with pytest.raises(ValueError, match=message):
            measures.get(name, **params)
    x = np.random.default_rng(0).standard_normal((12, 4))
    with pytest.raises(ValueError, match="knn: 12 neighbours need more than 12 sentences, got 12"):
        measures.get("mknn", knn=12).prepare(x)


def procrustes_reference(x, y):
    """From the definition, with scipy's orthogonal Procrustes rotation: max over orthogonal R of
    <X R, Y> / (|X| |Y|) for centred X and Y (zero-padded to the same width)."""
    from scipy.linalg import orthogonal_procrustes

    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    width = max(x.shape[1], y.shape[1])
    x, y = np.pad(x, ((0, 0), (0, width - x.shape[1]))), np.pad(y, ((0, 0), (0, width - y.shape[1])))
    r, _ = orthogonal_procrustes(x, y)
    return np.sum((x @ r) * y) / (np.linalg.norm(x) * np.linalg.norm(y))


def rsa_reference(x, y):
    from scipy.spatial.distance import pdist
    from scipy.stats import spearmanr

    return spearmanr(pdist(x, "correlation"), pdist(y, "correlation")).statistic


@pytest.mark.parametrize("measure, reference", [("procrustes", procrustes_reference), ("rsa", rsa_reference)])
def test_shape_measures_equal_their_definitions(measure, reference):
    rng = np.random.default_rng(11)
    for n, dx, dy in ((30, 8, 12), (40, 50, 20), (25, 5, 5)):
        shared = rng.standard_normal((n, 4))
        x = shared @ rng.standard_normal((4, dx)) + 0.7 * rng.standard_normal((n, dx))
        y = shared @ rng.standard_normal((4, dy)) + 0.7 * rng.standard_normal((n, dy))
        got = measures.get(measure).score(x, y)
        assert got == pytest.approx(reference(x, y), abs=1e-10)
        assert measures.get(measure).score(x, x) == pytest.approx(1.0, abs=1e-10)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))  # a rotation and a scale change no shape
    assert measures.get("procrustes").score(x, 3.0 * x @ q) == pytest.approx(1.0, abs=1e-10)


def test_rsa_gives_tied_dissimilarities_their_mean_rank():
    """Rows repeated as a bootstrap resample repeats sentences: their dissimilarities to a third row are equal
    but for rounding, and RSA equals Spearman's correlation with average ranks on the dissimilarities rounded
    to 1e-12 (exact ties); rounding noise of 1e-13 added to one side changes nothing."""
    from scipy.spatial.distance import pdist
    from scipy.stats import rankdata, spearmanr

    from crossrep.measures import mid_ranks

    values = np.array([0.3, 0.1, 0.3 + 1e-13, 0.2, 0.1, 0.3 - 1e-13, 0.5])
    np.testing.assert_array_equal(mid_ranks(values), rankdata(np.round(values, 12)) - 1)
    rng = np.random.default_rng(3)
    shared = rng.standard_normal((40, 4))
    x = shared @ rng.standard_normal((4, 12)) + 0.7 * rng.standard_normal((40, 12))
    y = shared @ rng.standard_normal((4, 9)) + 0.7 * rng.standard_normal((40, 9))
    rows = rng.integers(0, 40, 40)  # about 15 sentences repeated
    xb, yb = x[rows], y[rows]
    want = spearmanr(np.round(pdist(xb, "correlation"), 12), np.round(pdist(yb, "correlation"), 12)).statistic
    got = measures.get("rsa").score(xb, yb)
    assert got == pytest.approx(want, abs=1e-10)
    noisy = yb * (1 + 1e-13 * rng.standard_normal(yb.shape))
    assert measures.get("rsa").score(xb, noisy) == pytest.approx(got, abs=1e-12)


def cknna_reference(x, y, k):
    """From Huh et al.'s definition, entry by entry: rows L2-normalised, inner-product kernels, each sentence's
    k nearest others; HSIC_u written as Song et al.'s eq. 5 with explicit sums."""
    def kernel(z):
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        return z @ z.T

    def neighbours(kern):
        n = len(kern)
        return [set(sorted((j for j in range(n) if j != i), key=lambda j: -kern[i, j])[:k]) for i in range(n)]

    def hsic(a, b):
        n = len(a)
        a, b = a.copy(), b.copy()
        np.fill_diagonal(a, 0)
        np.fill_diagonal(b, 0)
        trace_ab = sum(a[i, j] * b[j, i] for i in range(n) for j in range(n))
        ones = np.ones(n)
        return (trace_ab + (ones @ a @ ones) * (ones @ b @ ones) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * (ones @ a @ b @ ones)) / (n * (n - 3))

    def masked(kern, nk, nl):
        n = len(kern)
        return np.array([[kern[i, j] if (j in nk[i] and j in nl[i]) else 0.0 for j in range(n)] for i in range(n)])

    kx, ky = kernel(x), kernel(y)
    nx, ny = neighbours(kx), neighbours(ky)
    return hsic(masked(kx, nx, ny), masked(ky, nx, ny)) / np.sqrt(hsic(masked(kx, nx, nx), masked(kx, nx, nx))
                                                                   * hsic(masked(ky, ny, ny), masked(ky, ny, ny)))


def test_cknna_equals_its_definition():
    rng = np.random.default_rng(13)
    for n, dx, dy, k in ((30, 8, 12, 5), (24, 40, 6, 3)):
        shared = rng.standard_normal((n, 4))
        x = shared @ rng.standard_normal((4, dx)) + 0.7 * rng.standard_normal((n, dx))
        y = shared @ rng.standard_normal((4, dy)) + 0.7 * rng.standard_normal((n, dy))
        assert measures.get("cknna", knn=k).score(x, y) == pytest.approx(cknna_reference(x, y, k), abs=1e-10)
        assert measures.get("cknna", knn=k).score(x, x) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="knn: 24 neighbours need more than 24 sentences"):
        measures.get("cknna", knn=24).prepare(x)


SHAPE_REFERENCE = Path(__file__).parent / "data" / "shape_reference.npz"


@pytest.mark.parametrize("measure", ["procrustes", "rsa", "cknna"])
def test_shape_measures_equal_the_peers_own_packages(measure):
    """netrep, rsatoolbox and platonic-rep's outputs on seeded inputs (tests/shape_reference: written in their own
    venv). netrep reports the angle, crossrep its cosine; platonic-rep adds 1e-6 to CKNNA's denominator."""
    ref = np.load(SHAPE_REFERENCE)
    knn = int(ref["knn"])
    m = measures.get(measure, **({"knn": knn} if measure == "cknna" else {}))
    cases = sorted({int(k.split("_")[1]) for k in ref.files if k.startswith("x_")})
    assert len(cases) >= 5
    worst = 0.0
    for i in cases:
        x, y, want = ref[f"x_{i}"], ref[f"y_{i}"], float(ref[f"{measure}_{i}"])
        got = m.score(x, y)
        if measure == "procrustes":
            got = float(np.arccos(np.clip(got, -1.0, 1.0)))
        worst = max(worst, abs(got - want) / max(abs(want), 1e-12))
        if measure == "cknna":  # crossrep's score with the peer's guard added to its denominator
            den = float(np.sqrt(m.prepare(x)[2] * m.prepare(y)[2]))
            got = got * den / (den + 1e-6)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), (measure, i, got, want)
    print(f"{measure}: worst relative difference to the peer {worst:.2e}")
