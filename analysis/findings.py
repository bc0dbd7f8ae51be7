"""The study's six findings, tested per model and measure on chance-adjusted scores.

Both sources of variation are in every test. Languages: each statistic is a function of the languages it is
computed on, and its variance over languages is the delete-one jackknife over languages (stratified by resource
level for finding 2): deleting a language removes all its pairs, so the dependence of the pairs that share a
language is respected. Sentences: the same sentences are compared in every language, so a statistic that
contrasts blocks of comparisons (deep vs shallow, text vs speech) also varies with the sentence sample, in a way
no resampling of languages sees. Its variance comes from the delete-a-group jackknife over sentences
(`similarity.jackknife` groups; each replicate leaves one group of sentence positions out of every comparison;
a bootstrap would repeat sentences, which both sides of a comparison then share, raising the scores and their
spread), keeping only the part that languages share (`shared_component`): each language's own sentence noise is
already in the language jackknife. Speakers: with every recording stored (`data.utterances: all`) and
`similarity.speakers` redraws of the recording of each key, the part of their variance that languages share is
a third component (each language's own speaker variation, like its own sentence noise, is already in the
language jackknife). The variances add, and the estimate over its standard error is referred to a t distribution
with Welch-Satterthwaite degrees of freedom.

One procedure gives the p-value and the interval: two-sided t tests, and an interval that is exactly the set of
effects the test does not reject. Multiplicity: the tests of one finding over every model and measure of the
report form a family, adjusted by Holm's step-down (valid under any dependence, so the strong dependence between
measures of the same activations makes it conservative, never invalid). Each row's interval is at the level
Holm compared its test with, so the interval excludes 0 exactly when the adjusted p is below alpha.
Verdict: "holds" when the adjusted p < alpha with the study's sign, "does not hold" when it is < alpha with the
other sign, "inconclusive" otherwise; "too few languages" below MIN_LANGUAGES in a compared group;
"no sentence jackknife" when `similarity.jackknife` < 2 (the sentence variation is then unknown; the language
part is still shown); "not applicable" when the model has no such points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable

import numpy as np
import xarray as xr

from crossrep import results, stats

from . import tokens

LEVELS = ("high", "medium", "low")
MIN_LANGUAGES = 5  # per compared group: below it a t reference with a handful of degrees of freedom is not trusted
TEST = ("Two-sided t test of 0: standard error from the jackknife over languages{strata} plus the part of the "
        "delete-a-group jackknife over sentences that languages share, Welch-Satterthwaite degrees of freedom; "
        "interval: the effects the test does not reject, at the level Holm's step-down used (family: this finding "
        "over every model and measure).")


@dataclass(frozen=True)
class Finding:
    id: int
    title: str
    claim: str
    statistic: str
    test: str
    figures: tuple[str, ...]
    study: dict[str, str]  # adapter -> what the study reported ("holds" / "does not hold")


FINDINGS = (
    Finding(1, "Cross-modal similarity rises with depth",
            "Cross-modal similarity rises over the layers (after a dip in the first ones).",
            "Per language, the mean chance-adjusted cross-modal score over the deeper half of the numbered layers "
            "minus that over the shallower half; averaged over languages.",
            TEST.format(strata=""),
            ("fig2_crossmodal.png", "crosslayer_text_speech.png"),
            {"seamless_m4t_v2": "holds", "sonar": "holds", "salmonn": "holds"}),
    Finding(2, "Lower-resource languages are less aligned across modalities",
            "Lower-resource languages have lower cross-modal similarity at every layer.",
            "Mean chance-adjusted cross-modal score over the numbered layers: mean of high-resource languages "
            "minus mean of low-resource languages.",
            TEST.format(strata=" within resource levels (high, low)"),
            ("fig2_crossmodal.png",),
            {"seamless_m4t_v2": "holds", "sonar": "holds", "salmonn": "holds"}),
    Finding(3, "Length adaptation closes the modality gap",
            "Length adaptation (SeamlessM4T's length adaptor, SONAR's pooling, SALMONN's Q-Former) raises "
            "cross-modal similarity, for high- and medium-resource languages at least.",
            "Per high- and medium-resource language, the chance-adjusted cross-modal score after the length "
            "adaptation minus that at the speech point it adapts; averaged over those languages (the low-resource "
            "mean is in the detail).",
            TEST.format(strata=""),
            ("fig2_crossmodal.png",),
            {"seamless_m4t_v2": "holds", "sonar": "holds", "salmonn": "holds"}),
    Finding(4, "Text is more aligned across languages than speech",
            "Cross-lingual similarity is higher for text than for speech.",
            "Per language pair, the chance-adjusted cross-lingual text score minus the speech score, averaged "
            "over the numbered layers both modalities have; averaged over pairs.",
            TEST.format(strata=" (a language's deletion drops all its pairs)"),
            ("fig3_crosslingual.png", "fig4_tsne.png"),
            {"seamless_m4t_v2": "holds", "sonar": "holds", "salmonn": "holds"}),
    Finding(5, "Shared tokens go with text similarity after the embeddings",
            "The proportion of tokens parallel sentences share correlates with text similarity at the input "
            "embeddings (SALMONN: r = 0.228).",
            "Pearson r over language pairs between the token-sharing ratio (mean Jaccard of the token-id sets of "
            "parallel sentences, the model's own tokenizer) and the chance-adjusted text score at the input "
            "point.",
            TEST.format(strata=" (a language's deletion drops all its pairs)"),
            ("fig6_tokens.png",),
            {"salmonn": "holds"}),
    Finding(6, "The modality gap exceeds the language gap at the last layer",
            "At the last layer, cross-modal similarity within a language is below cross-lingual text "
            "similarity (SeamlessM4T, SALMONN); SONAR, trained to close both gaps, is the exception.",
            "Per language at the deepest numbered layer compared across modalities: its mean chance-adjusted "
            "cross-lingual text score with the other languages minus its chance-adjusted cross-modal score; "
            "averaged over languages (the mean, not the study's best, which exceeds a single score by chance "
            "alone; the share of languages below their best is in the detail).",
            TEST.format(strata=""),
            ("fig5_last_layer.png",),
            {"seamless_m4t_v2": "holds", "sonar": "does not hold", "salmonn": "holds"}),
)


@dataclass(frozen=True)
class Result:
    """One finding for one model and measure: the statistic `value`, its standard error `se` (and its language,
    sentence and, with `similarity.speakers` redraws, speaker parts) with `df` degrees of freedom. [low, high] is
    the interval at `confidence` (clipped to [-1, 1] for finding 5's r), the level Holm's step-down used for this
    test; [raw_low, raw_high] the unadjusted 1 - alpha interval."""

    finding: int
    model: str
    measure: str
    value: float | None
    low: float | None
    high: float | None
    confidence: float | None
    p_value: float | None
    p_adjusted: float | None
    raw_low: float | None
    raw_high: float | None
    se: float | None
    df: float | None
    se_languages: float | None
    se_sentences: float | None
    se_speakers: float | None
    verdict: str
    study: str
    n: int
    family_size: int
    detail: str
    figure: str | None


@dataclass(frozen=True)
class Case:
    """What one finding tests for one model and measure: arrays over languages (last axis, or last two for pair
    matrices), the same arrays for each sentence-jackknife replicate, and the statistic of the kept languages."""

    main: dict
    boot: list
    statistic: Callable[[dict, np.ndarray], float]
    n: int
    detail: str
    strata: np.ndarray | None = None
    scale: Callable[[float], float] = staticmethod(lambda x: x)  # for display: finding 5 clips r's interval
    redraws: list = field(default_factory=list)  # the arrays of each speaker redraw (`similarity.speakers`)


@dataclass(frozen=True)
class Skip:
    """A finding not tested for this model and measure: the verdict and why."""

    verdict: str
    detail: str
    n: int = 0


def strs(values) -> np.ndarray:
    """Labels as a plain numpy string array (zarr v3 strings read back as numpy's StringDType)."""
    return np.array([str(v) for v in np.asarray(values).ravel()])


# ---------------------------------------------------------------- points, chosen by kind


def layer_pairs(ds: xr.Dataset) -> list[str]:
    """Cross-modal pairs of two numbered layers, by depth."""
    keep = (ds.pair_text_kind == "layer") & (ds.pair_speech_kind == "layer")
    pairs = strs(ds.pair)[keep.values]
    depth = ds.pair_depth.values[keep.values]
    return [str(p) for p in pairs[np.argsort(depth, kind="stable")]]


def last_layer_pair(ds: xr.Dataset) -> str | None:
    """The deepest cross-modal pair of two numbered layers (the study's "last layer")."""
    pairs = layer_pairs(ds)
    return pairs[-1] if pairs else None


def adaptation_pairs(ds: xr.Dataset) -> tuple[str, str] | None:
    """(after, before): the pair whose speech point is a length adaptation, and the pair at the speech point
    just before it in depth (what it adapts)."""
    kinds = dict(zip(ds.speech_point.values, ds.speech_kind.values))
    depths = dict(zip(ds.speech_point.values, ds.speech_depth.values))
    by_speech = {str(s): str(p) for p, s in zip(ds.pair.values, ds.pair_speech_point.values)}
    for point, kind in kinds.items():
        if kind != "adaptor" or str(point) not in by_speech:
            continue
        earlier = [s for s, d in depths.items() if d < depths[point] and str(s) in by_speech]
        if earlier:
            before = max(earlier, key=lambda s: depths[s])
            return by_speech[str(point)], by_speech[str(before)]
    return None


def input_text_point(ds: xr.Dataset) -> str | None:
    inputs = ds.text_point.values[(ds.text_kind == "input").values]
    return str(inputs[0]) if len(inputs) else None


# ---------------------------------------------------------------- the statistics


def adjusted(ds: xr.Dataset, name: str, **sel) -> tuple[np.ndarray, list[np.ndarray]]:
    """A variable's chance-adjusted scores and the same for each sentence-jackknife replicate (the replicate's
    score against the cell's own chance level)."""
    v = results.view(ds, name)
    main = v.adjusted.sel(**sel)
    boot = []
    if v.jack is not None:
        mu = v.null_mean.sel(**sel).values
        reps = v.jack.sel(**sel).transpose("group", ...).values
        with np.errstate(all="ignore"):
            boot = list((reps - mu) / (1.0 - mu))
    return main.values, boot


def _few(n: int, what: str = "languages") -> Skip:
    return Skip("too few languages", f"{n} {what}, fewer than {MIN_LANGUAGES}: no test", n)


def _mean_over(values: np.ndarray, idx: np.ndarray) -> float:
    return float(np.mean(values[..., idx]))


def _pair_mean(d: np.ndarray, idx: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        return float(np.nanmean(d[np.ix_(idx, idx)]))


def finding1(ds: xr.Dataset) -> Case | Skip:
    pairs = layer_pairs(ds)
    if len(pairs) < 2:
        return Skip("not applicable", "fewer than 2 numbered layers compared across modalities")
    half = len(pairs) // 2

    def diff(cm):
        return cm[len(pairs) - half:].mean(axis=0) - cm[:half].mean(axis=0)

    cm, boot = adjusted(ds, "crossmodal", pair=pairs)
    keep = np.isfinite(diff(cm))
    if keep.sum() < MIN_LANGUAGES:
        return _few(int(keep.sum()))
    return Case({"d": diff(cm)[keep]}, [{"d": diff(b)[keep]} for b in boot], lambda a, idx: _mean_over(a["d"], idx),
                int(keep.sum()), f"layers {', '.join(pairs[len(pairs) - half:])} minus {', '.join(pairs[:half])}")


def finding2(ds: xr.Dataset) -> Case | Skip:
    pairs = layer_pairs(ds)
    if not pairs:
        return Skip("not applicable", "no numbered layer compared across modalities")
    levels = strs(ds.level)
    cm, boot = adjusted(ds, "crossmodal", pair=pairs)
    keep = np.isin(levels, ("high", "low")) & np.isfinite(cm.mean(axis=0))
    lv = levels[keep]
    unknown = int((levels == "unknown").sum())
    counts = f"{(lv == 'high').sum()} high vs {(lv == 'low').sum()} low-resource languages" + (
        f" ({unknown} without a resource level left out: set them with data.levels)" if unknown else "")
    if min((lv == "high").sum(), (lv == "low").sum()) < MIN_LANGUAGES:
        return Skip("too few languages", f"{counts}, fewer than {MIN_LANGUAGES} in a group: no test",
                    int(keep.sum()))

    def gap(a, idx):
        v, labels = a["v"][idx], lv[idx]
        return float(v[labels == "high"].mean() - v[labels == "low"].mean())

    return Case({"v": cm.mean(axis=0)[keep]}, [{"v": b.mean(axis=0)[keep]} for b in boot], gap, int(keep.sum()),
                f"{counts}, layers {pairs[0]}..{pairs[-1]}", strata=lv)


def finding3(ds: xr.Dataset) -> Case | Skip:
    found = adaptation_pairs(ds)
    if found is None:
        return Skip("not applicable", "no length-adaptation point")
    after, before = found
    a_main, a_boot = adjusted(ds, "crossmodal", pair=after)
    b_main, b_boot = adjusted(ds, "crossmodal", pair=before)
    gain = a_main - b_main
    levels = strs(ds.level)
    hm = np.isin(levels, ("high", "medium")) & np.isfinite(gain)
    low_gain = gain[levels == "low"]
    low_text = f"; low-resource mean gain {np.nanmean(low_gain):.3f} ({low_gain.size} languages)" \
        if low_gain.size else ""
    if hm.sum() < MIN_LANGUAGES:
        return _few(int(hm.sum()), "high- and medium-resource languages")
    return Case({"g": gain[hm]}, [{"g": (x - y)[hm]} for x, y in zip(a_boot, b_boot)],
                lambda a, idx: _mean_over(a["g"], idx), int(hm.sum()), f"pair {after} minus pair {before}{low_text}")


def finding4(ds: xr.Dataset) -> Case | Skip:
    text = {str(p) for p, k in zip(ds.text_point.values, ds.text_kind.values) if k == "layer"}
    speech = {str(p) for p, k in zip(ds.speech_point.values, ds.speech_kind.values) if k == "layer"}
    common = [str(p) for p in ds.speech_point.values if str(p) in text & speech]
    if not common:
        return Skip("not applicable", "no numbered layer in both modalities")
    n = ds.sizes["lang_a"]
    if n < MIN_LANGUAGES:
        return _few(n)
    t_main, t_boot = adjusted(ds, "text", text_point=common)
    s_main, s_boot = adjusted(ds, "speech", speech_point=common)
    return Case({"d": (t_main - s_main).mean(axis=0)}, [{"d": (t - s).mean(axis=0)} for t, s in zip(t_boot, s_boot)],
                lambda a, idx: _pair_mean(a["d"], idx), n, f"layers {common[0]}..{common[-1]} ({len(common)})")


def finding5(ds: xr.Dataset, sharing: xr.DataArray | None) -> Case | Skip:
    point = input_text_point(ds)
    if sharing is None or point is None:
        return Skip("not applicable", "no text tokenizer or no input-embedding point")
    langs = [str(x) for x in ds.lang_a.values]
    if len(langs) < MIN_LANGUAGES:
        return _few(len(langs))
    sim = results.view(ds, "text").adjusted.sel(text_point=point)
    described = tokens.correlate(sharing, sim, dict(zip(langs, strs(ds.level))), permutations=0)
    y, boot = adjusted(ds, "text", text_point=point)
    s = sharing.sel(lang_a=langs, lang_b=langs).values

    def r_of(a, idx):
        keep = idx[:, None] < idx[None, :]
        x, z = a["s"][np.ix_(idx, idx)][keep], a["y"][np.ix_(idx, idx)][keep]
        ok = np.isfinite(x) & np.isfinite(z)
        if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(z[ok]) == 0:
            return np.nan
        return float(np.corrcoef(x[ok], z[ok])[0, 1])

    return Case({"s": s, "y": y}, [{"s": s, "y": b} for b in boot], r_of, len(langs),
                f"text point {point}; {described['n_pairs']} language pairs; Spearman rho "
                f"{described['spearman_rho']:.3f}, partial r (resource levels removed) {described['partial_r']:.3f}",
                scale=lambda x: float(np.clip(x, -1.0, 1.0)))


def finding6(ds: xr.Dataset) -> Case | Skip:
    pair = last_layer_pair(ds)
    if pair is None:
        return Skip("not applicable", "no numbered layer compared across modalities")
    n = ds.sizes["lang"]
    if n < MIN_LANGUAGES:
        return _few(n)
    t_point = str(ds.pair_text_point.sel(pair=pair).values)
    text, t_boot = adjusted(ds, "text", text_point=t_point)
    cm, c_boot = adjusted(ds, "crossmodal", pair=pair)

    def gap(a, idx):
        with np.errstate(all="ignore"):
            return float(np.mean(np.nanmean(a["text"][np.ix_(idx, idx)], axis=1) - a["cm"][idx]))

    below = int(np.sum(cm < np.nanmax(text, axis=1)))
    return Case({"text": text, "cm": cm}, [{"text": t, "cm": c} for t, c in zip(t_boot, c_boot)], gap, n,
                f"pair {pair}; {below} of {n} languages below their best cross-lingual text score (chance, with "
                f"exchangeable scores: {n - 1}/{n} = {(n - 1) / n:.0%})")


def evaluate(case: Case) -> stats.TTest:
    """The statistic of all languages, with its language, sentence and speaker variances (see
    `shared_component`)."""
    everyone = np.arange(case.n)
    estimate = case.statistic(case.main, everyone)
    comps = stats.jackknife(lambda idx: case.statistic(case.main, idx), case.n, case.strata)
    comps.append(shared_component(case, case.boot, "sentences", JACKKNIFE))
    if case.redraws:
        comps.append(shared_component(case, case.redraws, "speakers", REDRAW))
    return stats.t_test(estimate, comps)


JACKKNIFE, REDRAW = "jackknife", "redraw"


def shared_component(case: Case, replicates: list, source: str, kind: str) -> stats.Component | None:
    """The part of the statistic's variance over `replicates` (arrays like `case.main`) that languages share.

    `kind` JACKKNIFE: delete-a-group sentence replicates, (G - 1) / G times the sum of squared deviations, G - 1
    degrees of freedom. REDRAW: speaker redraws, each key's recording drawn anew as the kept one was drawn, so the
    main value is one more of S + 1 exchangeable draws: their sample variance, 1 / S times the sum of squared
    deviations from their mean, S degrees of freedom.

    A replicate moves every cell (a language's score, or a pair's) by its own noise and by what the sentences do
    to every language alike. The language jackknife already holds each language's own noise (its sentences' and
    which of its speakers read each key); adding the whole replicate variance would count it twice (and, for
    SVCCA, the jumps of each array's kept dimensions). So the statistic is linearised in its cells (central
    differences), and of the sum over replicates of (sum_c w_c d_c)^2 only the products of cells that share no
    language are kept, scaled up by sum |w_c w_c'| over all cell pairs / over those pairs (the shared part
    reaches every pair of cells alike). Clipped at 0. Speakers are redrawn independently per language, so their
    shared part is 0 in expectation: the component shows it measured."""
    if len(replicates) < 2:
        return None
    everyone = np.arange(case.n)
    cells, weights, devs = [], [], []
    for name, main in case.main.items():
        reps = np.stack([b[name] for b in replicates])
        if kind == REDRAW:  # the main value is one more draw: deviations from the mean of all of them
            reps = np.concatenate([main[None], reps])
            dev = reps - reps.mean(axis=0)
        else:
            dev = reps - main
        if not np.any(np.isfinite(dev) & (dev != 0)):
            continue  # fixed by design (a token-sharing matrix)
        for index in zip(*np.nonzero(np.isfinite(main))):
            if main.ndim == 2 and index[0] == index[1]:
                continue
            h = 1e-6 * max(1.0, abs(float(main[index])))
            up, down = dict(case.main), dict(case.main)
            up[name], down[name] = main.copy(), main.copy()
            up[name][index] += h
            down[name][index] -= h
            w = (case.statistic(up, everyone) - case.statistic(down, everyone)) / (2 * h)
            if np.isfinite(w) and w != 0:
                cells.append(set(int(i) for i in index))
                weights.append(w)
                devs.append(np.nan_to_num(dev[(slice(None),) + index]))
    g = len(replicates)
    factor, df = ((g - 1) / g, g - 1.0) if kind == JACKKNIFE else (1.0 / g, float(g))
    if not cells:
        return stats.Component(source, 0.0, df)
    member = np.zeros((len(cells), case.n))
    for k, langs_ in enumerate(cells):
        member[k, list(langs_)] = 1.0
    disjoint = (member @ member.T) == 0
    w = np.array(weights)
    u = w[:, None] * np.array(devs)  # (cells, G)
    cross = float(np.einsum("cg,cd,dg->", u, disjoint, u))
    absw = np.abs(w)
    scale = float(absw.sum() ** 2 / (absw @ disjoint @ absw)) if (absw @ disjoint @ absw) > 0 else 0.0
    return stats.Component(source, max(0.0, factor * cross * scale), df)


def test_model(ds: xr.Dataset, model: str, adapter: str, sharing: xr.DataArray | None = None) -> list[tuple]:
    """What each finding tests for every measure of one model's similarity Dataset: (model, adapter, finding,
    measure, Case or Skip), for `decide`."""
    out = []
    for measure in ds.measure.values:
        m = ds.sel(measure=measure)
        cases = _cases(m, sharing)
        if "draw" in m.dims:  # the same statistics on each speaker redraw
            cases = [replace(c, redraws=r.boot) if isinstance(c, Case) else c
                     for c, r in zip(cases, _cases(speaker_replicates(m), sharing))]
        out += [(model, adapter, f, str(measure), c) for f, c in zip(FINDINGS, cases)]
    return out


def _cases(m: xr.Dataset, sharing: xr.DataArray | None) -> list:
    return [finding1(m), finding2(m), finding3(m), finding4(m), finding5(m, sharing), finding6(m)]


def speaker_replicates(ds: xr.Dataset) -> xr.Dataset:
    """The Dataset with each layout's speaker redraws in place of its sentence-jackknife replicates, so that the
    findings' own code gives the arrays of every redraw (as `Case.boot`)."""
    layouts = list(ds.attrs.get("layouts", {}))
    jack = [results.var(lay, results.Part.JACK) for lay in layouts if results.var(lay, results.Part.JACK) in ds]
    out = ds.drop_vars(jack + (["group"] if "group" in ds.coords else []))
    for lay in layouts:
        redraws = results.var(lay, results.Part.SPEAKERS)
        if redraws in ds:
            out[results.var(lay, results.Part.JACK)] = ds[redraws].drop_vars("draw").rename(draw="group")
    return out


def decide(tested: list[tuple], alpha: float, suffixes: dict[str, str]) -> list[Result]:
    """Test every (model, adapter, finding, measure, case), adjust each finding's family by Holm, and give each row
    its interval at the level its test was compared with and its verdict."""
    rows = []
    for model, adapter, f, measure, case in tested:
        figure = f.figures[0]
        if suffixes.get(measure):
            stem, ext = figure.rsplit(".", 1)
            figure = f"{stem}{suffixes[measure]}.{ext}"
        base = dict(finding=f.id, model=model, measure=measure, study=f.study.get(adapter, ""), figure=figure,
                    value=None, low=None, high=None, confidence=None, p_value=None, p_adjusted=None, raw_low=None,
                    raw_high=None, se=None, df=None, se_languages=None, se_sentences=None, se_speakers=None,
                    family_size=0)
        if isinstance(case, Skip):
            rows.append((Result(**base, verdict=case.verdict, n=case.n, detail=case.detail), None, case))
            continue
        t = evaluate(case)
        sources = {c.source.split(" ")[0]: 0.0 for c in t.components}
        for c in t.components:
            sources[c.source.split(" ")[0]] += c.variance
        se = {k: _f(np.sqrt(v)) for k, v in sources.items()}
        lo, hi = t.interval(alpha)
        base.update(value=_f(case.scale(t.estimate)), p_value=_f(t.p), se=_f(t.se), df=_f(t.df),
                    raw_low=_f(case.scale(lo)), raw_high=_f(case.scale(hi)),
                    se_languages=se.get("languages"), se_sentences=se.get("sentences"),
                    se_speakers=se.get("speakers"))
        if "sentences" not in sources:
            rows.append((Result(**base, verdict="no sentence jackknife", n=case.n,
                                detail=f"{case.detail}; similarity.jackknife < 2: the sentence variation is unknown, "
                                       f"the interval is the languages' alone"), None, case))
            continue
        rows.append((Result(**base, verdict="", n=case.n, detail=case.detail), t, case))
    out = [r for r, _, _ in rows]
    for fid in sorted({r.finding for r in out}):
        members = [k for k, (r, t, _) in enumerate(rows) if r.finding == fid and t is not None]
        adj, level = stats.holm([rows[k][1].p for k in members], alpha)
        for k, p_adj, lvl in zip(members, adj, level):
            r, t, case = rows[k]
            lo, hi = t.interval(lvl) if np.isfinite(lvl) else (np.nan, np.nan)
            v = "inconclusive"
            if np.isfinite(p_adj) and p_adj < alpha:
                v = "holds" if t.estimate > 0 else "does not hold"
            elif not np.isfinite(t.p):
                v = "not applicable"
            out[k] = replace(r, p_adjusted=_f(p_adj), confidence=_f(1.0 - lvl), low=_f(case.scale(lo)),
                             high=_f(case.scale(hi)), family_size=len(members), verdict=v)
    return out


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def as_dicts(results: list[Result]) -> list[dict]:
    return [asdict(r) for r in results]


def describe() -> list[dict]:
    return [{"id": f.id, "title": f.title, "claim": f.claim, "statistic": f.statistic, "test": f.test,
             "figures": list(f.figures)} for f in FINDINGS]
