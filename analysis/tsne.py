"""t-SNE of text and speech at one point per model (the study's Fig. 4): whether sentences cluster by meaning,
by language (family) or by modality.

Every language's text and speech activations of the model's cross-lingual sentences are standardised per
feature together and embedded in two dimensions. The embedding runs on one thread, so that the same seed gives
the same coordinates.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from crossrep import languages as langs  # noqa: E402
from crossrep.config import MODALITIES, Job  # noqa: E402
from crossrep.errors import ConfigError  # noqa: E402
from crossrep.point import Point  # noqa: E402

STUDY_POINTS = {"seamless_m4t_v2": "14", "sonar": "14", "salmonn": "18"}  # the study's middle layers
MARKERS = {"text": "o", "speech": "^"}
FAMILIES = (sorted({langs.get(iso).family for iso in langs.STUDY})  # the study's first: their colours stay
            + sorted({lang.family for lang in langs.LANGUAGES.values()} - {langs.get(iso).family for iso in langs.STUDY}))
COLUMNS = ["model", "point", "lang", "family", "level", "modality", "sentence_id", "x", "y"]


def family_color(family: str):
    """A fixed colour per language family (its place among the study's families), the same in every figure."""
    cmap = plt.get_cmap("tab20")
    return cmap(FAMILIES.index(family) % cmap.N) if family in FAMILIES else "grey"


def default_point(plan_points: tuple[Point, ...], adapter: str) -> str:
    """The study's middle layer for the adapter if `plan_points` (the points both modalities have) hold it,
    else their middle point of kind "layer" (the 2nd of 4, the 12th of 24)."""
    names = [p.name for p in plan_points]
    if STUDY_POINTS.get(adapter) in names:
        return STUDY_POINTS[adapter]
    layers = sorted((p for p in plan_points if p.kind == "layer"), key=lambda p: p.depth)
    if not layers:
        raise ConfigError(f"t-SNE: no layer point to default to among {', '.join(names) or 'no points'} "
                          f"({adapter}); name one in analysis.tsne.points")
    return layers[(len(layers) - 1) // 2].name


def shared_points(plan) -> tuple[Point, ...]:
    """The text points whose name the speech side has too."""
    speech = {p.name for p in plan.points["speech"]}
    return tuple(p for p in plan.points["text"] if p.name in speech)


def embed(job: Job, model_name: str, point: str | None = None, seed: int = 0,
          perplexity: float = 30.0) -> pd.DataFrame:
    """2-D t-SNE coordinates of every (modality, language, cross-lingual sentence) of the model at `point`
    (default: `default_point`), one row each, with the language's family and resource level."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    from crossrep.plan import open_checked
    from crossrep.store import ShardKey

    store = open_checked(job)
    plan = store.model(model_name)
    point = default_point(shared_points(plan), plan.adapter) if point is None else str(point)
    widths = {}
    for modality in MODALITIES:
        have = {p.name: p.width for p in plan.points[modality]}
        if point not in have:
            raise ConfigError(f"t-SNE of model {model_name}: {modality} has no point {point!r}; it has "
                              f"{', '.join(have)} (analysis.tsne.points.{model_name})")
        widths[modality] = have[point]
    if len(set(widths.values())) > 1:
        raise ConfigError(f"t-SNE of model {model_name}: point {point!r} is {widths['text']} wide for text but "
                          f"{widths['speech']} for speech; pick a point of one width "
                          f"(analysis.tsne.points.{model_name})")
    ids = list(plan.crosslingual_ids)
    blocks, meta = [], []
    for modality in MODALITIES:
        for lang in plan.languages:
            blocks.append(store.read(ShardKey(model_name, modality, lang), point, ids).astype(np.float64))
            info = langs.get(lang)
            level = langs.level(lang, job.data.levels)
            meta += [(model_name, point, lang, info.family, level, modality, sid) for sid in ids]
    x = np.concatenate(blocks)
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    tsne = TSNE(n_components=2, perplexity=min(perplexity, (len(x) - 1) / 3), random_state=seed, init="pca")
    with threadpool_limits(limits=1):
        xy = tsne.fit_transform(x)
    frame = pd.DataFrame(meta, columns=COLUMNS[:-2])
    frame["x"], frame["y"] = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
    return frame


def figure(frames: list[pd.DataFrame], path_stem: Path) -> Path:
    """One panel per model: colour by language family, marker by modality; `<stem>.png`, `.pdf` and the
    coordinates as `.csv`."""
    path_stem = Path(path_stem)
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(frames), figsize=(5.0 * len(frames), 4.6), squeeze=False)
    seen = set()
    for ax, frame in zip(axes[0], frames):
        for (family, modality), group in frame.groupby(["family", "modality"], sort=True):
            ax.scatter(group["x"], group["y"], s=10, alpha=0.7, color=family_color(family),
                       marker=MARKERS[modality], linewidths=0)
            seen.add(family)
        ax.set_title(f"{frame['model'].iloc[0]} at point {frame['point'].iloc[0]}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Line2D([], [], linestyle="", marker="s", color=family_color(f), label=f) for f in sorted(seen)]
    handles += [Line2D([], [], linestyle="", marker=m, color="black", label=mod) for mod, m in MARKERS.items()]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    for ext in ("png", "pdf"):
        fig.savefig(path_stem.parent / f"{path_stem.name}.{ext}", dpi=150)
    plt.close(fig)
    pd.concat(frames, ignore_index=True)[COLUMNS].to_csv(path_stem.parent / f"{path_stem.name}.csv", index=False)
    return path_stem.parent / f"{path_stem.name}.png"


def run(job: Job, out: Path) -> Path:
    """`out/fig4_tsne.{png,pdf,csv}` for every model of the job at its configured (or default) point."""
    from crossrep.plan import open_checked

    store = open_checked(job)
    cfg = job.analysis.tsne
    frames = []
    for m in job.models:
        plan = store.model(m.name)
        point = cfg.points.get(m.name, default_point(shared_points(plan), plan.adapter))
        frames.append(embed(job, m.name, point, seed=cfg.seed, perplexity=cfg.perplexity))
    return figure(frames, Path(out) / "fig4_tsne")
