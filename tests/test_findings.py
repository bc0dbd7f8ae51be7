"""The findings' statistics: planted findings hold and absent ones do not (through reduce, aggregate and the
report, on a real store); the tests' error rate on structured null data with shared sentence components (a small
version of bench/calibration.py that fails when a test ignores the sentences); every interval agrees with its
verdict; Holm, the jackknifes and the t reference against direct computations."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from scipy import stats as sps

from crossrep import stats
from crossrep.analysis import findings

pytestmark = pytest.mark.unit

LANGS = ["eng", "deu", "fra", "cmn", "arb", "tur", "ell", "hin", "rus", "tha", "swh", "amh", "bul", "khm", "kat"]


@pytest.fixture(scope="module")
def many_languages(tmp_path_factory):
    from crossrep.data.demo import write_demo

    return write_demo(tmp_path_factory.mktemp("data15") / "demo", tuple(LANGS), sentences=40, use_espeak=False,
                      progress=False)


def _run(tmp, root, tiny, scenario, measures=("svcca",)):
    import yaml
    from conftest import job_dict
    from crossrep.analysis import aggregate
    from crossrep.config import load_job
    from crossrep.plan import create_store
    from crossrep import results
    from synthetic import plant

    spec = job_dict(tmp / "out", root, tiny, **{"data.languages": LANGS, "data.crossmodal_sentences": 32,
                                                "data.crosslingual_sentences": 32})
    spec["similarity"].update(measures=list(measures), jackknife=10)
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    job = load_job(path)
    create_store(job, progress=False)
    plant(job.out, scenario)
    results.write(job)
    report = aggregate.run(job)
    record = json.loads((job.out / "findings.json").read_text())
    return record, report


def agreement_problems(record: dict) -> list[str]:
    """Rows whose verdict and interval disagree: a verdict of holds / does not hold needs an interval entirely
    above / below 0, and an inconclusive one an interval that contains 0."""
    bad = []
    for r in record["results"]:
        v, lo, hi = r["verdict"], r["low"], r["high"]
        if v == "holds" and not (lo is not None and lo > 0):
            bad.append(f"{r['model']}/{r['measure']}/{r['finding']}: holds with [{lo}, {hi}]")
        elif v == "does not hold" and not (hi is not None and hi < 0):
            bad.append(f"{r['model']}/{r['measure']}/{r['finding']}: does not hold with [{lo}, {hi}]")
        elif v == "inconclusive" and not (lo is not None and hi is not None and lo <= 0 <= hi):
            bad.append(f"{r['model']}/{r['measure']}/{r['finding']}: inconclusive with [{lo}, {hi}]")
        if v in ("holds", "does not hold", "inconclusive") and (r["p_adjusted"] < record["alpha"]) != (
                v != "inconclusive"):
            bad.append(f"{r['model']}/{r['measure']}/{r['finding']}: {v} with adjusted p {r['p_adjusted']}")
    return bad


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory, many_languages, tiny):
    from synthetic import planted

    return _run(tmp_path_factory.mktemp("planted"), many_languages, tiny, planted, ("svcca", "cka_debiased"))


@pytest.mark.e2e
def test_planted_findings_hold(planted_run):
    record, report = planted_run
    results = [r for r in record["results"] if r["measure"] == "cka_debiased"]
    for r in results:
        assert r["verdict"] == "holds", r
        assert r["low"] > 0 and r["p_adjusted"] < 0.05
    assert agreement_problems(record) == []
    m = record["multiplicity"]
    assert m["tests"] == 12 and m["families"] == 6 and "Holm" in m["method"]
    page = report.read_text()
    assert all(f'id="finding-{k}"' in page for k in range(1, 7))
    assert f"{m['holds']} of 12 tests hold after adjustment" in page
    # each measure's rows name its own figure
    figs = {(r["measure"], r["finding"]): r["figure"] for r in record["results"]}
    assert figs["svcca", 1] == "fig2_crossmodal.png" and figs["cka_debiased", 1] == "fig2_crossmodal_cka_debiased.png"


@pytest.mark.browser
def test_report_of_a_real_run_loads_in_chromium(planted_run, tmp_path, chromium):
    from browser import load_in_browser

    _, report = planted_run
    result = load_in_browser(report, tmp_path, chromium)
    assert result["errors"] == []
    shown = {i["alt"].rsplit("(", 1)[-1].rstrip(")") for i in result["images"]}
    assert {"fig2_crossmodal.png", "fig3_crosslingual.png", "fig4_tsne.png", "fig5_last_layer.png",
            "fig6_tokens.png", "fig2_crossmodal_cka_debiased.png"} <= shown, shown
    assert all(i["width"] > 0 for i in result["images"]), result["images"]
    assert "</code> is missing:" not in report.read_text()  # only figures this run drew are named


@pytest.mark.e2e
def test_absent_findings_do_not_hold(tmp_path, many_languages, tiny):
    from synthetic import absent

    record, _ = _run(tmp_path, many_languages, tiny, absent)
    results = {r["finding"]: r for r in record["results"]}
    for k in range(1, 7):
        assert results[k]["verdict"] != "holds", results[k]
    assert results[6]["verdict"] == "does not hold"  # planted the other way: cross-modal above cross-lingual
    assert agreement_problems(record) == []


def test_too_few_languages_is_a_verdict_with_the_count():
    import synthetic

    plan = synthetic.cal_plan(n=20, languages=["eng", "deu", "fra", "swh", "amh", "bul", "khm"])  # 3 high, 4 low
    ds, sharing = synthetic.simulate(synthetic.planted_weights, 0, plan=plan)
    rows = {r.finding: r for r in findings.decide(findings.test_model(ds, "sim", "x", sharing), 0.05, {})}
    assert rows[2].verdict == "too few languages" and "3 high vs 4 low" in rows[2].detail
    assert rows[2].p_value is None and rows[2].low is None
    assert rows[4].verdict != "too few languages"  # 7 languages are enough for a mean over languages


# ---------------------------------------------------------------- calibration, small


def test_finding4_is_calibrated_under_shared_sentence_components_and_fails_without_them():
    """Text and speech equally aligned across languages, each modality sharing a sentence component across its
    languages (the structure that made the language bootstrap anti-conservative), debiased CKA: the two-sided
    test's false verdicts stay within alpha + 2 standard errors over 100 simulations; the same statistic with the
    language variance alone exceeds it (so this test fails when the sentences are left out)."""
    import synthetic

    shared, plan = synthetic.shared_sentences, synthetic.finding4_plan()
    alpha, seeds = 0.05, 100
    full = languages_only = 0
    for seed in range(seeds):
        with contextlib.redirect_stderr(io.StringIO()):
            ds, _ = synthetic.simulate(shared, 1000 + seed, plan=plan, measures=("cka_debiased",))
        case = findings.finding4(ds.sel(measure="cka_debiased"))
        t = findings.evaluate(case)
        full += t.p < alpha
        lang = stats.t_test(t.estimate, [c for c in t.components if c.source.startswith("languages")])
        languages_only += lang.p < alpha
    limit = alpha + 2 * np.sqrt(alpha * (1 - alpha) / seeds)
    print("finding 4 false verdicts", full / seeds, "languages only", languages_only / seeds, "limit", limit)
    assert full / seeds <= limit
    assert languages_only / seeds > limit


# ---------------------------------------------------------------- the pieces against direct computations


def test_holm_equals_a_direct_step_down_and_its_levels_agree_with_it():
    g = np.random.default_rng(0)
    for _ in range(200):
        m = int(g.integers(1, 12))
        p = np.where(g.random(m) < 0.3, g.random(m) * 0.02, g.random(m))
        adjusted, level = stats.holm(p, 0.05)
        order = np.argsort(p)
        direct = np.empty(m)
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * p[i]))
            direct[i] = running
        assert np.allclose(adjusted, direct)
        rejected = adjusted < 0.05
        assert np.array_equal(rejected, p < level)  # each test against its own level: the same decisions
    adjusted, level = stats.holm([np.nan, 0.01, 0.04], 0.05)
    assert np.isnan(adjusted[0]) and np.isnan(level[0])
    assert adjusted[1:] == pytest.approx([0.02, 0.04]) and level[1:] == pytest.approx([0.025, 0.05])


def test_t_interval_inverts_the_test_and_satterthwaite_matches_welch():
    x, y = np.random.default_rng(1).normal(0.3, 1, 9), np.random.default_rng(2).normal(0, 2, 6)
    comps = [stats.Component("a", x.var(ddof=1) / 9, 8), stats.Component("b", y.var(ddof=1) / 6, 5)]
    t = stats.t_test(x.mean() - y.mean(), comps)
    welch = sps.ttest_ind(x, y, equal_var=False)
    assert t.p == pytest.approx(welch.pvalue, rel=1e-10)
    for alpha in (0.01, 0.05, 0.2):
        lo, hi = t.interval(alpha)
        assert (lo > 0 or hi < 0) == (t.p < alpha)
        shifted = stats.t_test(t.estimate - lo, comps)  # the interval's end is where the test stops rejecting
        assert shifted.p == pytest.approx(alpha, rel=1e-8)


def test_stratified_jackknife_of_a_difference_of_means_is_welchs_variance():
    g = np.random.default_rng(3)
    v = g.normal(0, 1, 11)
    labels = np.array(["high"] * 5 + ["low"] * 6)

    def gap(idx):
        return v[idx][labels[idx] == "high"].mean() - v[idx][labels[idx] == "low"].mean()

    comps = stats.jackknife(gap, 11, labels)
    assert sum(c.variance for c in comps) == pytest.approx(v[:5].var(ddof=1) / 5 + v[5:].var(ddof=1) / 6)
    assert sorted(c.df for c in comps) == [4, 5]
    plain = stats.jackknife(lambda idx: v[idx].mean(), 11)
    assert plain[0].variance == pytest.approx(v.var(ddof=1) / 11) and plain[0].df == 10


def test_group_jackknife_variance_and_kept_positions():
    r = np.array([1.0, 2.0, 4.0, 7.0])
    c = stats.group_component(r)
    assert c.variance == pytest.approx(3 / 4 * ((r - r.mean()) ** 2).sum()) and c.df == 3
    assert stats.group_component([1.0]) is None
    kept = [stats.jackknife_kept(0, 23, 5, g) for g in range(5)]
    left_out = [set(range(23)) - set(k.tolist()) for k in kept]
    assert sorted(len(x) for x in left_out) == [4, 4, 5, 5, 5]
    assert set().union(*left_out) == set(range(23)) and sum(len(x) for x in left_out) == 23
    assert all(np.all(np.diff(k) > 0) for k in kept)


def test_shared_sentence_component_keeps_only_what_languages_share():
    """Per-language values: replicate deviations = a shared term (the same for every language) + each language's
    own noise. The component is the shared term's jackknife variance, not the whole."""
    g = np.random.default_rng(5)
    n, groups = 12, 10
    main = g.normal(0, 1, n)
    shared = g.normal(0, 1, groups)
    own = g.normal(0, 3, (groups, n))
    boot = [{"v": main + shared[k] + own[k] - own.mean(axis=0)} for k in range(groups)]
    case = findings.Case({"v": main}, boot, lambda a, idx: float(np.mean(a["v"][idx])), n, "")
    comp = findings.shared_component(case, case.boot, "sentences", findings.JACKKNIFE)
    own_dev = own - own.mean(axis=0)
    u = (shared[:, None] + own_dev) / n  # each cell's weighted deviation per replicate
    off = (u.sum(axis=1) ** 2 - (u ** 2).sum(axis=1)).sum()
    expected = (groups - 1) / groups * off * (n * n) / (n * n - n)
    assert comp.variance == pytest.approx(max(0.0, expected), rel=1e-6)
    whole = stats.group_component([np.mean(b["v"]) for b in boot]).variance
    assert comp.variance < whole  # each language's own noise is left to the language jackknife


def test_language_bootstrap_interval_covers_the_population_mean():
    """The tables' and figures' intervals of means over languages (not the findings')."""
    covered_lang, covered_pairs = 0, 0
    for rep in range(200):
        g = np.random.default_rng(1000 + rep)
        values = g.normal(0.4, 0.2, 30)
        draws = stats.language_indices(30, 500, rep, "coverage")
        low, high = stats.interval(stats.resampled_means(values, False, draws))
        covered_lang += low <= 0.4 <= high
        effect = g.normal(0, 0.1, 20)  # pair matrix: each language's effect shared by its pairs
        m = 0.4 + effect[:, None] + effect[None, :] + g.normal(0, 0.05, (20, 20))
        m = (m + m.T) / 2
        np.fill_diagonal(m, np.nan)
        low, high = stats.interval(stats.resampled_means(m, True, stats.language_indices(20, 500, rep, "pairs")))
        covered_pairs += low <= 0.4 <= high
    assert 180 <= covered_lang <= 196, covered_lang
    assert 180 <= covered_pairs <= 196, covered_pairs


def test_add_one_p():
    null = np.array([0.1, 0.2, 0.3, 0.4])
    assert stats.add_one_p(null, 0.25) == pytest.approx(3 / 5)
    assert stats.add_one_p(null, 1.0) == pytest.approx(1 / 5)
    # a discrete measure's null equal to the observed score but for the last bits counts as reaching it
    assert stats.add_one_p(null, 0.3 + 4e-17) == pytest.approx(3 / 5)
    assert stats.add_one_p(np.array([0.6 - 1e-16, 0.2]), 0.6) == pytest.approx(2 / 3)
