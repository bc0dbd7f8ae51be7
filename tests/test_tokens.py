"""Token sharing (analysis/tokens.py) and the adapters' text tokenizers: direct computations, planted relations,
the tokenizers against the ids each model's embed path feeds its text encoder, and the sharing of a tiny store."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from crossrep.languages import get as language
from crossrep.analysis import tokens
from crossrep.data.demo import corpus
from crossrep.models.base import Adapter

pytestmark = pytest.mark.model

LEVELS = ("high", "medium", "low")


def matrix(values: np.ndarray, langs: list[str]) -> xr.DataArray:
    return xr.DataArray(values, dims=("lang_a", "lang_b"), coords={"lang_a": langs, "lang_b": langs})


def symmetric(rng, n: int) -> np.ndarray:
    a = rng.standard_normal((n, n))
    a = a + a.T
    np.fill_diagonal(a, np.nan)
    return a


def upper(a: np.ndarray) -> np.ndarray:
    """The upper triangle row by row, written as a loop."""
    return np.array([a[i, j] for i in range(len(a)) for j in range(len(a)) if j > i])


def langs_levels(n: int, rng) -> tuple[list[str], dict[str, str]]:
    langs = [f"l{i:02d}" for i in range(n)]
    return langs, {lang: LEVELS[int(rng.integers(3))] for lang in langs}


# ---------------------------------------------------------------------- jaccard and the sharing matrix


def test_jaccard_on_hand_made_lists():
    assert tokens.jaccard([1, 2, 2, 3], [3, 2, 4]) == 0.5  # {2, 3} of {1, 2, 3, 4}
    assert tokens.jaccard([5, 5], [5]) == 1.0
    assert tokens.jaccard([1], [2]) == 0.0
    assert tokens.jaccard([], []) == 0.0
    assert tokens.jaccard([], [7]) == 0.0


def test_sharing_matrix_equals_a_direct_computation():
    ids = {"a": [[1, 2, 3], [4, 4, 5], []],
           "b": [[1, 2, 9], [5], []],
           "c": [[7, 8], [4, 5, 6, 6], [1]]}
    got = tokens.sharing_matrix(ids)

    def direct(x, y):
        inter = np.intersect1d(x, y).size
        union = np.union1d(x, y).size
        return inter / union if union else 0.0

    names = list(ids)
    assert got.dtype == np.float64 and got.shape == (3, 3)
    assert np.isnan(np.diag(got)).all()
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                want = np.mean([direct(x, y) for x, y in zip(ids[a], ids[b])])
                assert got[i, j] == pytest.approx(want, abs=1e-15)
    assert got[0, 1] == pytest.approx((2 / 4 + 1 / 2 + 0) / 3)  # a-b by hand: {1,2} of {1,2,3,9}; {5} of {4,5}
    assert got[1, 2] == pytest.approx((0 + 1 / 3 + 0) / 3)


# ---------------------------------------------------------------------- correlate


def test_pearson_and_spearman_equal_scipy_on_the_upper_triangle():
    rng = np.random.default_rng(3)
    langs, levels = langs_levels(9, rng)
    x, y = symmetric(rng, 9), symmetric(rng, 9)
    y = y + 0.8 * x
    res = tokens.correlate(matrix(x, langs), matrix(y, langs), levels, permutations=99)
    pr, sr = stats.pearsonr(upper(x), upper(y)), stats.spearmanr(upper(x), upper(y))
    assert res["n_pairs"] == 36
    assert res["pearson_r"] == pytest.approx(pr[0], abs=1e-12)
    assert res["pearson_p"] == pytest.approx(pr[1], rel=1e-9)
    assert res["spearman_rho"] == pytest.approx(sr[0], abs=1e-12)
    assert res["spearman_p"] == pytest.approx(sr[1], rel=1e-9)
    # the similarity's own language order does not matter: it is aligned on the sharing's
    order = list(rng.permutation(9))
    shuffled = matrix(y[np.ix_(order, order)], [langs[k] for k in order])
    again = tokens.correlate(matrix(x, langs), shuffled, levels, permutations=99)
    assert again["pearson_r"] == pytest.approx(res["pearson_r"], abs=1e-12)
    assert again["partial_r"] == pytest.approx(res["partial_r"], abs=1e-12)
    assert again["mantel_p"] == res["mantel_p"]


def test_partial_correlation_equals_the_precision_matrix_formula():
    rng = np.random.default_rng(11)
    n = 14
    langs, levels = langs_levels(n, rng)
    code = {"high": 2, "medium": 1, "low": 0}
    x, y = symmetric(rng, n), symmetric(rng, n)
    y = y + 0.5 * x
    res = tokens.correlate(matrix(x, langs), matrix(y, langs), levels, permutations=9)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    s = np.array([code[levels[langs[i]]] + code[levels[langs[j]]] for i, j in pairs], dtype=float)
    d = np.array([abs(code[levels[langs[i]]] - code[levels[langs[j]]]) for i, j in pairs], dtype=float)
    data = np.column_stack([[x[i, j] for i, j in pairs], [y[i, j] for i, j in pairs], s, d])
    prec = np.linalg.inv(np.cov(data, rowvar=False))
    want = -prec[0, 1] / np.sqrt(prec[0, 0] * prec[1, 1])
    df = len(pairs) - 4
    t = want * np.sqrt(df / (1 - want ** 2))
    assert res["partial_r"] == pytest.approx(want, abs=1e-10)
    assert res["partial_df"] == df
    assert res["partial_p"] == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-8)


def test_a_confound_of_resource_levels_is_removed_by_the_partial_correlation():
    rng = np.random.default_rng(5)
    n = 30
    langs, levels = langs_levels(n, rng)
    code = np.array([{"high": 2, "medium": 1, "low": 0}[levels[lang]] for lang in langs], dtype=float)
    total, gap = code[:, None] + code[None, :], np.abs(code[:, None] - code[None, :])
    sharing = 0.1 * total - 0.05 * gap + 0.02 * symmetric(rng, n)
    similarity = 0.2 * total + 0.1 * gap + 0.05 * symmetric(rng, n)  # levels plus noise unrelated to sharing
    res = tokens.correlate(matrix(sharing, langs), matrix(similarity, langs), levels, permutations=99)
    assert res["n_pairs"] == 435
    assert res["pearson_r"] > 0.7 and res["pearson_p"] < 1e-10
    assert abs(res["partial_r"]) < 0.15 and res["partial_p"] > 0.01


def test_mantel_p_is_small_for_a_planted_relation():
    rng = np.random.default_rng(8)
    langs, levels = langs_levels(15, rng)
    x = symmetric(rng, 15)
    y = x + 0.7 * symmetric(rng, 15)
    res = tokens.correlate(matrix(x, langs), matrix(y, langs), levels, permutations=999, seed=4)
    assert res["mantel_p"] < 0.01 and res["permutations"] == 999
    assert res["mantel_p"] == pytest.approx(1 / 1000)  # no relabelling beats the true one


def test_mantel_p_is_roughly_uniform_without_a_relation():
    ps = []
    for seed in range(100):
        rng = np.random.default_rng(1000 + seed)
        langs, levels = langs_levels(10, rng)
        res = tokens.correlate(matrix(symmetric(rng, 10), langs), matrix(symmetric(rng, 10), langs), levels,
                               permutations=199, seed=seed)
        ps.append(res["mantel_p"])
    ps = np.array(ps)
    assert ((ps >= 1 / 200) & (ps <= 1)).all()
    assert np.mean(ps < 0.05) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 100)
    assert 0.35 <= np.mean(ps < 0.5) <= 0.65


def test_scatter_writes_figures_and_the_pairs(tmp_path):
    rng = np.random.default_rng(2)
    langs, levels = langs_levels(5, rng)
    x, y = np.abs(symmetric(rng, 5)) / 10, symmetric(rng, 5)
    res = tokens.correlate(matrix(x, langs), matrix(y, langs), levels, permutations=19)
    png = tokens.scatter([("m1", matrix(x, langs), matrix(y, langs), res),
                          ("m2", matrix(y, langs), matrix(x, langs), res)], tmp_path / "sub" / "fig_tokens", "svcca")
    assert png == tmp_path / "sub" / "fig_tokens.png"
    for ext in ("png", "pdf", "csv"):
        assert (tmp_path / "sub" / f"fig_tokens.{ext}").stat().st_size > 0
    table = pd.read_csv(tmp_path / "sub" / "fig_tokens.csv")
    assert list(table.columns) == ["model", "lang_a", "lang_b", "sharing", "similarity"]
    assert len(table) == 20 and list(table.model.unique()) == ["m1", "m2"]
    first = table[table.model == "m1"]
    assert np.allclose(first.sharing, upper(x)) and np.allclose(first.similarity, upper(y))


# ---------------------------------------------------------------------- the adapters' text tokenizers


def sentences(*isos: str) -> list[tuple[str, str]]:
    text = corpus()
    return [(iso, text[iso][k]) for iso in isos for k in (0, 5)]


def test_the_adapter_default_is_no_text_tokenizer():
    assert Adapter.text_tokenizer("anything", {}) is None


def test_seamless_text_tokenizer_equals_its_embed_path(tiny):
    from crossrep.models.seamless import SeamlessM4Tv2Adapter, lang_token

    adapter = SeamlessM4Tv2Adapter(str(tiny), {}, device="cpu")
    tokenize = SeamlessM4Tv2Adapter.text_tokenizer(str(tiny), {})
    fed = []
    handle = adapter.text_encoder.register_forward_pre_hook(
        lambda _m, _a, kw: fed.append(kw["input_ids"][0].tolist()), with_kwargs=True)
    try:
        for iso, text in sentences("deu", "khm", "eng"):
            adapter.embed("text", iso, [text], ("1",))
            ids = tokenize(text)
            vocab = adapter.tokenizer.get_vocab()
            assert fed[-1] == [vocab[lang_token(iso)]] + ids + [adapter.tokenizer.eos_token_id]
            assert len(ids) > 5 and not set(ids) & set(adapter.tokenizer.all_special_ids)
    finally:
        handle.remove()


def test_sonar_text_tokenizer_equals_its_embed_path(tmp_path_factory, monkeypatch):
    from crossrep.models.sonar import SonarAdapter

    checkpoint = SonarAdapter.resolve("tiny", tmp_path_factory.mktemp("sonar"))
    adapter = SonarAdapter(checkpoint, {}, device="cpu")
    tokenize = SonarAdapter.text_tokenizer(checkpoint, {})
    fed = []
    states = adapter.text.states

    def recording(ids, lengths):
        fed.append(ids[0].tolist())
        return states(ids, lengths)

    monkeypatch.setattr(adapter.text, "states", recording)
    for iso, text in sentences("fra", "khm"):
        adapter.embed("text", iso, [text], ("1",))
        ids = tokenize(text)
        tag = adapter.tokenizer.convert_tokens_to_ids(language(iso).flores)
        assert fed[-1] == [tag] + ids + [adapter.tokenizer.eos_token_id]
        assert len(ids) > 5 and not set(ids) & set(adapter.tokenizer.all_special_ids)


@pytest.fixture(scope="module")
def salmonn_checkpoint(tmp_path_factory) -> dict:
    from crossrep.models.salmonn import SalmonnAdapter

    return SalmonnAdapter.resolve("tiny", tmp_path_factory.mktemp("salmonn"))


@pytest.mark.parametrize("options", [{}, {"prompt": "Repeat: {text} now",
                                          "template": "USER: {prompt} <Speech><SpeechHere></Speech>\nASSISTANT:"}])
def test_salmonn_text_tokenizer_equals_the_transcript_positions(salmonn_checkpoint, options):
    from crossrep.models.salmonn import SalmonnAdapter

    checkpoint = salmonn_checkpoint
    adapter = SalmonnAdapter(checkpoint, options, device="cpu")
    tokenize = SalmonnAdapter.text_tokenizer(checkpoint, adapter.options)
    seen = []
    run = adapter.model.run  # the forward pass: keeps the states it returns
    adapter.model.run = lambda *a, **kw: seen.append(run(*a, **kw)) or seen[-1]
    clip = np.zeros(4000, dtype=np.float32)
    for iso, text in sentences("eng", "khm"):
        adapter.embed("text", iso, [(clip, text)], ("in",))
        st = seen[-1]
        assert st.input_ids[0][st.transcript[0]].tolist() == tokenize(text)
        assert len(tokenize(text)) > 3 and 1 not in tokenize(text)  # no BOS


# ---------------------------------------------------------------------- token sharing on a tiny store


@pytest.fixture(scope="module")
def job(tmp_path_factory, demo_root, tiny):
    from tiny_store import extracted_job

    return extracted_job(tmp_path_factory.mktemp("tokens"), demo_root, tiny)


def test_token_sharing_of_a_tiny_store(job, tiny):
    from transformers import AutoTokenizer

    from crossrep.data.fleurs import FleursLanguage
    from crossrep.plan import open_checked

    share = tokens.token_sharing(job, "seamless")
    plan = open_checked(job).model("seamless")
    langs = ["eng", "deu", "fra", "khm"]
    assert share.dims == ("lang_a", "lang_b") and list(share.lang_a.values) == langs
    assert list(share.lang_b.values) == langs and share.attrs["sentences"] == len(plan.crosslingual_ids) == 12
    values = share.values
    assert values.dtype == np.float64 and np.isnan(np.diag(values)).all()
    off = values[~np.eye(4, dtype=bool)]
    assert np.allclose(values, values.T, equal_nan=True) and ((off >= 0) & (off <= 1)).all()
    assert "Jaccard" in share.attrs["definition"]
    tok = AutoTokenizer.from_pretrained(str(tiny))
    texts = {iso: FleursLanguage(job.data.root, iso, job.data.split, job.data.seed).texts(list(plan.crosslingual_ids))
             for iso in ("eng", "fra", "khm")}
    for a, b in (("eng", "fra"), ("eng", "khm")):
        want = 0.0
        for ta, tb in zip(texts[a], texts[b]):
            sa, sb = set(tok.encode(ta, add_special_tokens=False)), set(tok.encode(tb, add_special_tokens=False))
            want += len(sa.intersection(sb)) / len(sa.union(sb)) / len(texts[a])
        assert float(share.sel(lang_a=a, lang_b=b)) == pytest.approx(want, abs=1e-12)
    assert float(share.sel(lang_a="eng", lang_b="fra")) > float(share.sel(lang_a="eng", lang_b="khm"))


def test_token_sharing_is_none_without_a_text_tokenizer(job, monkeypatch):
    from crossrep.models.seamless import SeamlessM4Tv2Adapter

    monkeypatch.setattr(SeamlessM4Tv2Adapter, "text_tokenizer", classmethod(lambda cls, checkpoint, options: None))
    assert tokens.token_sharing(job, "seamless") is None
