"""Figures like the study's Fig. 2 (cross-modal over layers, by resource level), Fig. 3 (cross-lingual, text
vs speech) and Fig. 5 (per language at the last layer), as PNG and PDF in `<out>/figures/`, with their tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from crossrep.config import Job  # noqa: E402
from crossrep.plan import open_checked  # noqa: E402
from crossrep.reduce import check_similarity, open_similarity  # noqa: E402

from . import tables  # noqa: E402

COLORS = {"all": "black", "high": "tab:blue", "medium": "tab:orange", "low": "tab:red",
          "text": "tab:green", "speech": "tab:purple"}


def run(job: Job) -> Path:
    """Every figure for every measure: the first measure of the job unsuffixed, the others `_<measure>`.

    Drawn into a scratch folder, then moved into `<out>/figures/`, where figures of earlier jobs that this one
    does not draw are removed (files that crossrep did not write are left alone)."""
    open_checked(job)
    check_similarity(job)
    target = job.out / "figures"
    out = job.out / ".figures.partial"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    full = {m.name: open_similarity(job.out, m.name) for m in job.models}
    for k, measure in enumerate(job.similarity.measures):
        datasets = {name: ds.sel(measure=measure) for name, ds in full.items()}
        suffix = "" if k == 0 else f"_{measure}"
        fig2(datasets, out, suffix, measure)
        fig3(datasets, out, suffix, measure)
        fig5(datasets, out, suffix, measure)
    target.mkdir(exist_ok=True)
    drawn = {f.name for f in out.iterdir()}
    for old in target.glob("fig*_*.*"):
        if old.name not in drawn and old.suffix in (".png", ".pdf", ".csv"):
            old.unlink()
    for name in drawn:
        (out / name).replace(target / name)
    out.rmdir()
    return target


def _axes(n: int, width: float = 5.0, height: float = 3.6):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, axes[0]


def _save(fig, out: Path, name: str) -> None:
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"{name}.{ext}", dpi=150)
    plt.close(fig)


def _ticks(ax, depths, labels) -> None:
    ax.set_xticks(list(depths))
    ax.set_xticklabels(list(labels), rotation=90, fontsize=7)


def fig2(datasets: dict, out: Path, suffix: str, measure: str) -> None:
    fig, axes = _axes(len(datasets))
    rows = []
    for ax, (model, ds) in zip(axes, datasets.items()):
        table = tables.crossmodal_by_level(ds)
        rows += [(model,) + r for r in table]
        for group in ("all",) + tables.LEVELS:
            pts = [(d, v) for _, d, g, v, _ in table if g == group]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, color=COLORS[group],
                        lw=2 if group == "all" else 1, label=group)
        base = ds.baseline_crossmodal.mean("repeat")
        ax.plot(ds.pair_depth.values, base.values, ls="--", color="gray", label="random baseline")
        _ticks(ax, ds.pair_depth.values, ds.pair.values)
        ax.set(title=f"{model}: cross-modal (text vs speech)", xlabel="point", ylabel=measure, ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
    _save(fig, out, "fig2_crossmodal" + suffix)
    tables.write_csv(out / f"fig2_crossmodal{suffix}.csv", ("model", "pair", "depth", "group", "mean", "languages"),
                     rows)


def fig3(datasets: dict, out: Path, suffix: str, measure: str) -> None:
    fig, axes = _axes(len(datasets))
    rows = []
    for ax, (model, ds) in zip(axes, datasets.items()):
        table = tables.crosslingual(ds)
        rows += [(model,) + r for r in table]
        for modality in ("text", "speech"):
            pts = [(d, v) for m, _, d, v, _, _ in table if m == modality]
            ax.plot(*zip(*pts), marker="o", ms=3, color=COLORS[modality], label=modality)
            dim = f"{modality}_point"
            base = ds[f"baseline_{modality}"].mean("repeat")
            ax.plot(ds[f"{modality}_depth"].values, base.values, ls="--", color=COLORS[modality], alpha=0.5,
                    label=f"{modality} random baseline")
            if modality == "speech":
                _ticks(ax, ds[f"{modality}_depth"].values, ds[dim].values)
        ax.set(title=f"{model}: cross-lingual, mean over language pairs", xlabel="point", ylabel=measure,
               ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
    _save(fig, out, "fig3_crosslingual" + suffix)
    tables.write_csv(out / f"fig3_crosslingual{suffix}.csv",
                     ("model", "modality", "point", "depth", "mean", "std", "pairs"), rows)


def fig5(datasets: dict, out: Path, suffix: str, measure: str) -> None:
    fig, axes = _axes(len(datasets), width=max(6.0, 0.28 * max(len(ds.lang) for ds in datasets.values())))
    rows = []
    for ax, (model, ds) in zip(axes, datasets.items()):
        pair = tables.last_layer_pair(ds)
        table = tables.per_language(ds, pair)
        rows += [(model, pair) + r for r in table]
        x = range(len(table))
        for offset, (lo, hi, label, color) in enumerate(((3, 4, "cross-lingual text", "text"),
                                                        (5, 6, "cross-lingual speech", "speech"),
                                                        (7, 8, "text vs other languages' speech", "all"))):
            ax.vlines([i + (offset - 1) * 0.2 for i in x], [r[lo] for r in table], [r[hi] for r in table],
                      color=COLORS[color], lw=2, label=f"{label} (range)")
        ax.scatter(list(x), [r[2] for r in table], color="tab:red", zorder=3, s=14, label="cross-modal, same language")
        ax.set_xticks(list(x))
        ax.set_xticklabels([r[0] for r in table], rotation=90, fontsize=7)
        ax.set(title=f"{model}: per language at point {pair}", ylabel=measure, ylim=(-0.02, 1.02))
        ax.legend(fontsize=6)
    _save(fig, out, "fig5_last_layer" + suffix)
    tables.write_csv(out / f"fig5_last_layer{suffix}.csv",
                     ("model", "pair", "lang", "level", "crossmodal", "text_min", "text_max", "speech_min",
                      "speech_max", "text_speech_min", "text_speech_max"), rows)
