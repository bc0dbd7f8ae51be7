"""The findings' statistics: planted findings hold and absent ones do not (through reduce, aggregate and the
report, on a real store), each test's false-positive rate on data with no structure, interval coverage."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import yaml

from crossrep import stats
from crossrep.analysis import findings

LANGS = ["eng", "deu", "fra", "cat", "ita", "nld", "khm", "amh", "kat", "sna", "snd", "bul"]


@pytest.fixture(scope="module")
def many_languages(tmp_path_factory):
    from crossrep.data.demo import write_demo

    return write_demo(tmp_path_factory.mktemp("data12") / "demo", tuple(LANGS), sentences=48, use_espeak=False,
                      progress=False)


def _run(tmp, root, tiny, scenario):
    from conftest import job_dict
    from crossrep.analysis import aggregate
    from crossrep.config import load_job
    from crossrep.plan import create_store
    from crossrep import reduce
    from synthetic import plant

    spec = job_dict(tmp / "out", root, tiny, **{"data.languages": LANGS, "data.crossmodal_sentences": 28,
                                                "data.crosslingual_sentences": 28})
    spec["similarity"].update(permutations=10, bootstrap=4)
    spec["analysis"] = {"language_bootstrap": 500}
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    job = load_job(path)
    create_store(job, progress=False)
    plant(job.out, scenario)
    reduce.run(job)
    report = aggregate.run(job)
    record = json.loads((job.out / "findings.json").read_text())
    return {r["finding"]: r for r in record["results"] if r["measure"] == "svcca"}, report


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory, many_languages, tiny):
    from synthetic import planted

    return _run(tmp_path_factory.mktemp("planted"), many_languages, tiny, planted)


def test_planted_findings_hold(planted_run):
    results, report = planted_run
    for k in range(1, 7):
        assert results[k]["verdict"] == "holds", results[k]
        assert results[k]["low"] > 0
    page = report.read_text()
    assert all(f'id="finding-{k}"' in page for k in range(1, 7))


def test_report_of_a_real_run_loads_in_chromium(planted_run, tmp_path, chromium):
    from browser import load_in_browser

    _, report = planted_run
    result = load_in_browser(report, tmp_path, chromium)
    assert result["errors"] == []
    shown = {i["alt"].rsplit("(", 1)[-1].rstrip(")") for i in result["images"]}
    assert shown == {"fig2_crossmodal.png", "fig3_crosslingual.png", "fig4_tsne.png", "fig5_last_layer.png",
                     "fig6_tokens.png"}, shown
    assert all(i["width"] > 0 for i in result["images"]), result["images"]
    assert "</code> is missing:" not in report.read_text()  # only figures this run drew are named


def test_absent_findings_do_not_hold(tmp_path, many_languages, tiny):
    from synthetic import absent

    results, _ = _run(tmp_path, many_languages, tiny, absent)
    for k in range(1, 7):
        assert results[k]["verdict"] != "holds", results[k]
    assert results[6]["verdict"] == "does not hold"  # planted the other way: cross-modal above cross-lingual


# ---------------------------------------------------------------- no structure: error rates


def _null_dataset(g: np.random.Generator, n_lang: int = 16, layers: int = 4) -> xr.Dataset:
    """Chance-adjusted scores with no finding in them but the dependence of real ones: each language has its
    own random effect (shared by all its pairs) and every score its own noise."""
    levels = np.array((["high"] * 6 + ["medium"] * 4 + ["low"] * 6)[:n_lang])
    pairs = ["in"] + [str(i) for i in range(1, layers + 1)] + ["len"]
    kinds = ["input"] + ["layer"] * layers + ["adaptor"]
    depth = [0.0] + [float(i) for i in range(1, layers + 1)] + [layers + 1.0]
    lang_effect = g.normal(0, 0.1, n_lang)

    def matrix():
        m = 0.3 + lang_effect[:, None] + lang_effect[None, :] + g.normal(0, 0.05, (n_lang, n_lang))
        m = (m + m.T) / 2
        np.fill_diagonal(m, np.nan)
        return m

    cm = np.stack([0.3 + 2 * lang_effect + g.normal(0, 0.05, n_lang) for _ in pairs])
    text = np.stack([matrix() for _ in pairs[:-1]])
    speech = np.stack([matrix() for _ in pairs])
    speech_points = pairs
    return xr.Dataset(
        {"crossmodal_adjusted": (("pair", "lang"), cm),
         "text_adjusted": (("text_point", "lang_a", "lang_b"), text),
         "speech_adjusted": (("speech_point", "lang_a", "lang_b"), speech)},
        coords={"pair": pairs, "pair_text_kind": ("pair", kinds[:-1] + ["output"]),
                "pair_speech_kind": ("pair", kinds), "pair_depth": ("pair", depth),
                "pair_text_point": ("pair", pairs[:-1] + [pairs[-2]]), "pair_speech_point": ("pair", pairs),
                "text_point": pairs[:-1], "text_kind": ("text_point", kinds[:-1]),
                "speech_point": speech_points, "speech_kind": ("speech_point", kinds),
                "speech_depth": ("speech_point", depth),
                "lang": [f"l{i}" for i in range(n_lang)], "lang_a": [f"l{i}" for i in range(n_lang)],
                "lang_b": [f"l{i}" for i in range(n_lang)], "level": ("lang", levels)})


def test_false_positive_rates_on_data_without_structure():
    alpha, seeds = 0.05, 200
    st = findings.Settings(alpha=alpha, count=199, seed=0)
    hits = np.zeros(7)
    for seed in range(seeds):
        g = np.random.default_rng(seed)
        ds = _null_dataset(g)
        n = ds.sizes["lang"]
        effect = g.normal(0, 0.1, n)
        share = 0.2 + effect[:, None] + effect[None, :] + g.normal(0, 0.02, (n, n))
        share = (share + share.T) / 2
        sharing = xr.DataArray(share, dims=("lang_a", "lang_b"), coords={"lang_a": ds.lang_a.values,
                                                                          "lang_b": ds.lang_b.values})
        st = findings.Settings(alpha=alpha, count=199, seed=seed)
        rows = [findings.finding1(ds, st), findings.finding2(ds, st), findings.finding3(ds, st),
                findings.finding4(ds, st), findings.finding5(ds, st, sharing), findings.finding6(ds, st)]
        for k, (value, low, high, p, _, _) in enumerate(rows, 1):
            hits[k] += findings.verdict(value, low, high, p, alpha) == "holds"
    limit = alpha + 2 * np.sqrt(alpha * (1 - alpha) / seeds)
    rates = hits[1:] / seeds
    print("false-positive rates", dict(zip(range(1, 7), rates)), "limit", round(limit, 4))
    assert (rates <= limit).all(), dict(zip(range(1, 7), rates))


def test_language_bootstrap_interval_covers_the_population_mean():
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
    print("coverage", covered_lang, covered_pairs)
    assert 180 <= covered_lang <= 196, covered_lang
    assert 180 <= covered_pairs <= 196, covered_pairs


def test_add_one_p_and_sign_flip():
    null = np.array([0.1, 0.2, 0.3, 0.4])
    assert stats.add_one_p(null, 0.25) == pytest.approx(3 / 5)
    assert stats.add_one_p(null, 1.0) == pytest.approx(1 / 5)
    assert stats.sign_flip_p(np.full(12, 0.5), 999, 0, "x") == pytest.approx(1 / 1000, abs=3e-3)
    assert stats.sign_flip_p(np.full(12, -0.5), 999, 0, "x") == pytest.approx(1.0)
