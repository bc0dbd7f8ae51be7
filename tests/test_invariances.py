"""Each measure's declared invariances hold, and the ones it does not declare do not: every transformation of
ReSi's taxonomy applied to one side, the score compared with the untransformed one."""

import numpy as np
import pytest

from crossrep import measures

pytestmark = pytest.mark.unit


def transforms(d: int, rng) -> dict:
    q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    stretch = q @ np.diag(np.linspace(0.2, 5.0, d)) @ np.linalg.qr(rng.standard_normal((d, d)))[0]
    shift = 6.0 * rng.standard_normal(d)
    return {"orthogonal": lambda x: x @ q, "isotropic scaling": lambda x: 3.7 * x,
            "invertible linear": lambda x: x @ stretch, "translation": lambda x: x + shift}


@pytest.mark.parametrize("name", list(measures.REGISTRY))
def test_declared_invariances_hold_and_no_others(name):
    rng = np.random.default_rng(11)
    n, d = 60, 8
    x = rng.standard_normal((n, d)) * np.linspace(0.5, 2.0, d)
    y = x @ rng.standard_normal((d, d)) + 0.8 * rng.standard_normal((n, d))
    m = measures.get(name, **({"knn": 5} if "knn" in measures.get(name).params() else {}))
    base = m.score(x, y)
    declared = set(type(m).invariances)
    for kind, f in transforms(d, rng).items():
        moved = m.score(f(x), y)
        if kind in declared:
            assert abs(moved - base) < 1e-8, (name, kind, base, moved)
        else:
            assert abs(moved - base) > 1e-4, (name, kind, "undeclared but invariant", base, moved)


def test_unknown_invariance_is_refused():
    class Odd(measures.Measure):
        name = "odd"
        invariances = ("rotation",)

    with pytest.raises(TypeError, match="unknown invariance 'rotation'"):
        measures.register(Odd)
