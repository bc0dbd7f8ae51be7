"""Token sharing between languages and its relation to cross-lingual similarity (the study's Finding 5).

The sharing of two languages is the mean, over the model's cross-lingual sentences, of the Jaccard index of the
two translations' token-id sets under the model's own text tokenizer. `correlate` relates it to a similarity
matrix over the L(L-1)/2 language pairs: Pearson and Spearman, a partial correlation that removes what the two
languages' resource levels explain (high-resource languages share scripts and score high for that reason
alone), and a Mantel test, since the pairs of one language are not independent.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402
from scipy import stats  # noqa: E402

from crossrep.config import Job  # noqa: E402

LEVEL_CODES = {"high": 2.0, "medium": 1.0, "low": 0.0}
DEFINITION = ("mean over the model's cross-lingual sentences of the Jaccard index |A & B| / |A | B| of the two "
              "translations' token-id sets, tokenised by the model's text tokenizer without special tokens")


def jaccard(a: list[int], b: list[int]) -> float:
    """|set(a) & set(b)| / |set(a) | set(b)|; 0 when both are empty."""
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 0.0


def sharing_matrix(token_ids: dict[str, list[list[int]]]) -> np.ndarray:
    """(L, L) mean Jaccard of parallel sentences (the same position in every language); NaN diagonal."""
    langs = list(token_ids)
    m = {len(v) for v in token_ids.values()}
    if len(m) != 1:
        raise ValueError(f"languages hold different numbers of sentences: {sorted(m)}")
    out = np.full((len(langs), len(langs)), np.nan, dtype=np.float64)
    for i, a in enumerate(langs):
        for j in range(i + 1, len(langs)):
            scores = [jaccard(x, y) for x, y in zip(token_ids[a], token_ids[langs[j]])]
            out[i, j] = out[j, i] = np.mean(scores) if scores else np.nan
    return out


def token_sharing(job: Job, model_name: str) -> xr.DataArray | None:
    """The model's (lang_a, lang_b) sharing matrix over its cross-lingual sentences, from the store's plan and
    the job's data; None where the adapter has no text tokenizer."""
    from crossrep.data.fleurs import FleursLanguage
    from crossrep.models import adapter_class
    from crossrep.plan import open_checked

    plan = open_checked(job).model(model_name)
    tokenize = adapter_class(plan.adapter).text_tokenizer(plan.checkpoint, plan.options)
    if tokenize is None:
        return None
    ids = list(plan.crosslingual_ids)
    token_ids = {}
    for lang in plan.languages:
        texts = FleursLanguage(job.data.root, lang, job.data.split, job.data.seed).texts(ids)
        token_ids[lang] = [tokenize(t) for t in texts]
    langs = list(plan.languages)
    return xr.DataArray(sharing_matrix(token_ids), dims=("lang_a", "lang_b"),
                        coords={"lang_a": langs, "lang_b": langs}, name="token_sharing",
                        attrs={"definition": DEFINITION, "model": model_name, "adapter": plan.adapter,
                               "sentences": len(ids), "diagonal": "NaN"})


def _pairs(sharing: xr.DataArray, similarity: xr.DataArray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The languages and both matrices in the sharing's language order, as float64."""
    langs = [str(v) for v in sharing.lang_a.values]
    x = sharing.sel(lang_b=langs).values.astype(np.float64)
    y = similarity.sel(lang_a=langs, lang_b=langs).values.astype(np.float64)
    return langs, x, y


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    return float(x @ y / np.sqrt((x @ x) * (y @ y)))


def correlate(sharing: xr.DataArray, similarity: xr.DataArray, levels: dict[str, str],
              permutations: int = 999, seed: int = 0) -> dict:
    """Pearson, Spearman, partial (resource levels removed) correlations and a Mantel p over the upper-triangle
    language pairs (pairs where either value is not finite are left out)."""
    langs, sx, sy = _pairs(sharing, similarity)
    iu = np.triu_indices(len(langs), 1)
    x, y = sx[iu], sy[iu]
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        nan = float("nan")
        return {"pearson_r": nan, "pearson_p": nan, "spearman_rho": nan, "spearman_p": nan, "partial_r": nan,
                "partial_p": nan, "partial_df": 0, "mantel_p": nan, "permutations": permutations, "n_pairs": n}
    pearson, spearman = stats.pearsonr(x, y), stats.spearmanr(x, y)
    code = np.array([LEVEL_CODES[levels[lang]] for lang in langs], dtype=np.float64)
    la, lb = code[iu[0]][ok], code[iu[1]][ok]
    z = np.column_stack([np.ones(n), la + lb, np.abs(la - lb)])
    rx = x - z @ np.linalg.lstsq(z, x, rcond=None)[0]
    ry = y - z @ np.linalg.lstsq(z, y, rcond=None)[0]
    partial = _pearson(rx, ry)
    df = n - 2 - (np.linalg.matrix_rank(z) - 1)  # covariates that levels leave constant do not count
    t = partial * np.sqrt(df / max(1.0 - partial ** 2, np.finfo(np.float64).tiny))
    r = _pearson(x, y)
    rng = np.random.default_rng(seed)
    hits, xs = 0, sx[iu]
    for _ in range(permutations):
        p = rng.permutation(len(langs))
        yp = sy[np.ix_(p, p)][iu]
        keep = np.isfinite(xs) & np.isfinite(yp)
        hits += int(_pearson(xs[keep], yp[keep]) >= r - 1e-12)  # tolerance: a relabelling onto itself ties
    return {"pearson_r": float(pearson[0]), "pearson_p": float(pearson[1]),
            "spearman_rho": float(spearman[0]), "spearman_p": float(spearman[1]),
            "partial_r": partial, "partial_p": float(2 * stats.t.sf(abs(t), df)), "partial_df": int(df),
            "mantel_p": (1 + hits) / (permutations + 1), "permutations": permutations, "n_pairs": n}


def scatter(points: list[tuple[str, xr.DataArray, xr.DataArray, dict]], path_stem: Path, measure: str) -> Path:
    """One panel per (model, sharing, similarity, correlate() result): sharing against similarity per language
    pair; `<stem>.png`, `.pdf` and the plotted pairs as `.csv`."""
    path_stem = Path(path_stem)
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(points), figsize=(4.5 * len(points), 3.8), squeeze=False)
    rows = []
    for ax, (model, sharing, similarity, result) in zip(axes[0], points):
        langs, sx, sy = _pairs(sharing, similarity)
        iu = np.triu_indices(len(langs), 1)
        ax.scatter(sx[iu], sy[iu], s=12, alpha=0.7, color="tab:blue")
        ax.set_title(f"{model}: r = {result['pearson_r']:.3f}, p = {result['pearson_p']:.3g}\n"
                     f"partial r = {result['partial_r']:.3f}, Mantel p = {result['mantel_p']:.3g}", fontsize=9)
        ax.set_xlabel("token-sharing ratio (Jaccard)")
        ax.set_ylabel(f"cross-lingual similarity ({measure})")
        rows += [{"model": model, "lang_a": langs[i], "lang_b": langs[j], "sharing": sx[i, j],
                  "similarity": sy[i, j]} for i, j in zip(*iu)]
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(path_stem.parent / f"{path_stem.name}.{ext}", dpi=150)
    plt.close(fig)
    pd.DataFrame(rows, columns=["model", "lang_a", "lang_b", "sharing", "similarity"]).to_csv(
        path_stem.parent / f"{path_stem.name}.csv", index=False)
    return path_stem.parent / f"{path_stem.name}.png"
