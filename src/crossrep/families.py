"""Comparison families: which representations are compared with which, on which sentences, and where the scores
go in the similarity Dataset.

A family lays out one or more variables (`Layout`); a variable is a stack of blocks along its first dimension,
and a block is one matrix (or its diagonal) of scores between two lists of representations. The reduction turns
blocks into Dask tasks, the Dataset takes each variable's dims and coords from here, and the tables take their
columns from `Layout.columns`: nothing downstream tests family names.

The study's families (always computed): `crossmodal` (text vs speech of one language, on its first N sentence
ids), `text` and `speech` (cross-lingual, every language pair, on the M shared ids), `text_speech` (text of one
language vs speech of another, M ids). Optional: `crosslayer` (every point against every point of the same model
and language: text-text, speech-speech, text-speech, on the N ids) and `crossmodel` (the same modality, language
and sentences in two models of the job, every point against every point).

This module imports no array or store code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import ConfigError

DEFAULT = ("crossmodal", "text", "speech", "text_speech")


@dataclass(frozen=True)
class Rep:
    """One representation: a model's activations of one modality, point and language, on these sentence ids."""

    model: str
    modality: str
    point: str
    lang: str
    ids: tuple[int, ...]


@dataclass(frozen=True)
class Block:
    """Scores between `a` and `b` at `pairs` (i into a, j into b); `b` None: pairs within `a` (the upper
    triangle, mirrored); `diagonal`: only (i, i), kept as a vector."""

    a: tuple[Rep, ...]
    b: tuple[Rep, ...] | None
    pairs: tuple[tuple[int, int], ...]
    diagonal: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.a),) if self.diagonal else (len(self.a), len(self.a if self.b is None else self.b))

    @property
    def sentences(self) -> int:
        return len(self.a[0].ids)


@dataclass(frozen=True)
class Layout:
    """One Dataset variable of a family.

    dims: the variable's dims after `measure`; the first indexes `blocks`. coords: coordinates to add (name ->
    values or (dim, values)). language_dims: the dims that run over languages (averaged for family means,
    resampled by the language bootstrap). columns: table column -> coordinate for `point_a`, `point_b`,
    `lang_a`, `lang_b` (and `model_b` for cross-model). baseline: whether a random-vector baseline of each
    block's sizes is computed (families whose cells in a block share their sizes). resampled: whether its
    sentence-jackknife replicates are computed (the families the findings test)."""

    name: str
    family: str
    dims: tuple[str, ...]
    coords: dict[str, Any]
    blocks: tuple[Block, ...]
    language_dims: tuple[str, ...]
    columns: dict[str, str]
    symmetric: bool
    baseline: bool
    description: str
    model_b: str = ""
    resampled: bool = False


@dataclass(frozen=True)
class Context:
    """What a family needs of a model (a store `ModelPlan`) and of the job's later models (for cross-model)."""

    plan: Any
    later: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    layouts: Callable[[Context], list[Layout]] = field(repr=False)


FAMILIES: dict[str, Family] = {}


def register(name: str, description: str):
    def wrap(fn):
        FAMILIES[name] = Family(name, description, fn)
        return fn

    return wrap


def check(similarity) -> None:
    """Refuse unknown family names in a job's `similarity.families`, and a list without the study's families."""
    raw = list(similarity.families)
    if any(f not in FAMILIES for f in raw):
        raise ConfigError(f"similarity.families: expected a list of distinct families from {', '.join(FAMILIES)}, "
                          f"got {raw!r}")
    missing = [f for f in DEFAULT if f not in raw]
    if missing:
        raise ConfigError(f"similarity.families: the study's families {', '.join(DEFAULT)} are always computed "
                          f"(the figures and findings need them); {', '.join(missing)} missing from {raw!r}")


def layouts(names: tuple[str, ...], ctx: Context) -> list[Layout]:
    """Every variable of the named families for one model, in the order named."""
    return [lay for name in names for lay in FAMILIES[name].layouts(ctx)]


def _upper(n: int) -> tuple[tuple[int, int], ...]:
    return tuple((i, j) for i in range(n) for j in range(i + 1, n))


def _full(n: int, m: int) -> tuple[tuple[int, int], ...]:
    return tuple((i, j) for i in range(n) for j in range(m))


def _points(plan, modality: str) -> list:
    return list(plan.points[modality])


def pair_coords(plan) -> dict:
    speech = {p.name: p for p in plan.points["speech"]}
    text = {p.name: p for p in plan.points["text"]}
    return {
        "pair": [lbl for lbl, _, _ in plan.pairs],
        "pair_text_point": ("pair", [t for _, t, _ in plan.pairs]),
        "pair_speech_point": ("pair", [s for _, _, s in plan.pairs]),
        "pair_depth": ("pair", [speech[s].depth for _, _, s in plan.pairs]),
        "pair_text_kind": ("pair", [text[t].kind for _, t, _ in plan.pairs]),
        "pair_speech_kind": ("pair", [speech[s].kind for _, _, s in plan.pairs]),
    }


def point_coords(plan, modality: str, dim: str) -> dict:
    pts = _points(plan, modality)
    return {dim: [p.name for p in pts], dim.replace("_point", "_depth"): (dim, [p.depth for p in pts]),
            dim.replace("_point", "_kind"): (dim, [p.kind for p in pts])}


def _lang_coords(plan, dims: tuple[str, ...]) -> dict:
    return {d: list(plan.languages) for d in dims}


@register("crossmodal", "text vs speech of one language (its first N sentence ids), per cross-modal pair")
def _crossmodal(ctx: Context) -> list[Layout]:
    p = ctx.plan
    blocks = tuple(Block(tuple(Rep(p.name, "text", t, lang, p.crossmodal_ids[lang]) for lang in p.languages),
                         tuple(Rep(p.name, "speech", s, lang, p.crossmodal_ids[lang]) for lang in p.languages),
                         tuple((i, i) for i in range(len(p.languages))), diagonal=True)
                   for _, t, s in p.pairs)
    return [Layout("crossmodal", "crossmodal", ("pair", "lang"), {**pair_coords(p), **_lang_coords(p, ("lang",))},
                   blocks, ("lang",), {"point_a": "pair_text_point", "point_b": "pair_speech_point",
                                       "lang_a": "lang", "lang_b": "lang"}, False, True,
                   "text vs speech of one language, on its first N sentence ids", resampled=True)]


def _crosslingual(ctx: Context, modality: str) -> list[Layout]:
    p = ctx.plan
    dim = f"{modality}_point"
    ids = p.crosslingual_ids
    blocks = tuple(Block(tuple(Rep(p.name, modality, pt.name, lang, ids) for lang in p.languages), None,
                         _upper(len(p.languages))) for pt in _points(p, modality))
    return [Layout(modality, modality, (dim, "lang_a", "lang_b"),
                   {**point_coords(p, modality, dim), **_lang_coords(p, ("lang_a", "lang_b"))}, blocks,
                   ("lang_a", "lang_b"), {"point_a": dim, "point_b": dim, "lang_a": "lang_a", "lang_b": "lang_b"},
                   True, True, f"{modality} of lang_a vs {modality} of lang_b, on the M shared ids (diagonal NaN)",
                   resampled=True)]


@register("text", "cross-lingual text: every language pair, per text point")
def _text(ctx: Context) -> list[Layout]:
    return _crosslingual(ctx, "text")


@register("speech", "cross-lingual speech: every language pair, per speech point")
def _speech(ctx: Context) -> list[Layout]:
    return _crosslingual(ctx, "speech")


@register("text_speech", "text of one language vs speech of another, per cross-modal pair")
def _text_speech(ctx: Context) -> list[Layout]:
    p = ctx.plan
    ids, n = p.crosslingual_ids, len(p.languages)
    blocks = tuple(Block(tuple(Rep(p.name, "text", t, lang, ids) for lang in p.languages),
                         tuple(Rep(p.name, "speech", s, lang, ids) for lang in p.languages), _full(n, n))
                   for _, t, s in p.pairs)
    return [Layout("text_speech", "text_speech", ("pair", "lang_a", "lang_b"),
                   {**pair_coords(p), **_lang_coords(p, ("lang_a", "lang_b"))}, blocks, ("lang_a", "lang_b"),
                   {"point_a": "pair_text_point", "point_b": "pair_speech_point", "lang_a": "lang_a",
                    "lang_b": "lang_b"}, False, True, "text of lang_a vs speech of lang_b, on the M shared ids")]


@register("crosslayer", "every point against every point of the same model and language (N ids)")
def _crosslayer(ctx: Context) -> list[Layout]:
    p = ctx.plan
    out = []
    for ma, mb in (("text", "text"), ("speech", "speech"), ("text", "speech")):
        pa, pb = _points(p, ma), _points(p, mb)
        same = ma == mb
        dim_a, dim_b = f"{ma}_point", (f"{mb}_point_b" if same else f"{mb}_point")
        blocks = tuple(Block(tuple(Rep(p.name, ma, x.name, lang, p.crossmodal_ids[lang]) for x in pa),
                             None if same else tuple(Rep(p.name, mb, y.name, lang, p.crossmodal_ids[lang])
                                                     for y in pb),
                             _upper(len(pa)) if same else _full(len(pa), len(pb)))
                       for lang in p.languages)
        coords = {**_lang_coords(p, ("lang",)), **point_coords(p, ma, dim_a), **point_coords(p, mb, dim_b)}
        name = f"crosslayer_{ma}" if same else "crosslayer_text_speech"
        out.append(Layout(name, "crosslayer", ("lang", dim_a, dim_b), coords, blocks, ("lang",),
                          {"point_a": dim_a, "point_b": dim_b, "lang_a": "lang", "lang_b": "lang"}, same, False,
                          f"{ma} point vs {mb} point of one language, on its first N sentence ids"))
    return out


@register("crossmodel", "the same modality, language and sentences in two models, every point pair")
def _crossmodel(ctx: Context) -> list[Layout]:
    p = ctx.plan
    out = []
    for q in ctx.later:
        shared = [lang for lang in p.languages if lang in q.languages]
        if not shared:
            continue
        ids = {lang: tuple(sorted(set(p.crossmodal_ids[lang]) & set(q.crossmodal_ids[lang]))) for lang in shared}
        short = [lang for lang, v in ids.items() if len(v) < 4]
        if short:
            raise ValueError(f"crossmodel {p.name} vs {q.name}: {', '.join(short)} share fewer than 4 sentence ids")
        for modality in ("text", "speech"):
            pa, pb = _points(p, modality), _points(q, modality)
            dim_l, dim_a, dim_b = f"lang_{q.name}", f"{modality}_point", f"{q.name}_{modality}_point"
            blocks = tuple(Block(tuple(Rep(p.name, modality, x.name, lang, ids[lang]) for x in pa),
                                 tuple(Rep(q.name, modality, y.name, lang, ids[lang]) for y in pb),
                                 _full(len(pa), len(pb))) for lang in shared)
            coords = {dim_l: shared, **point_coords(p, modality, dim_a), **point_coords(q, modality, dim_b)}
            out.append(Layout(f"crossmodel_{modality}__{q.name}", "crossmodel", (dim_l, dim_a, dim_b), coords,
                              blocks, (dim_l,), {"point_a": dim_a, "point_b": dim_b, "lang_a": dim_l,
                                                 "lang_b": dim_l}, False, False,
                              f"{modality} point of {p.name} vs {modality} point of {q.name}, same language and "
                              f"sentences (the N ids both models share)", model_b=q.name))
    return out
