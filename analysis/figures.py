"""Figures like the study's Fig. 2 (cross-modal over layers, by resource level), Fig. 3 (cross-lingual, text
vs speech) and Fig. 5 (per language at the last layer), with 95 % intervals (sentence bootstrap; language
bootstrap where there is none), chance drawn as the findings use it (the permutation null mean, which they
subtract; the random-Gaussian-array baseline only faint and named as not chance), and layer-by-layer heatmaps
of the cross-layer family; PNG and PDF with the CSV behind each."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from crossrep import results  # noqa: E402

from . import tables  # noqa: E402

COLORS = {"all": "black", "high": "tab:blue", "medium": "tab:orange", "low": "tab:red",
          "text": "tab:green", "speech": "tab:purple"}
CHANCE = "chance (permutation null)"  # the level the findings subtract: the measure with one side shuffled
RANDOM = "random Gaussian arrays (not the chance level)"  # the measure on independent arrays of the same sizes


def draw(datasets: dict, out: Path, measures: tuple[str, ...], count: int, seed: int) -> list[str]:
    """Every figure for every measure into `out`: the first measure unsuffixed, the others `_<measure>`."""
    written = []
    for k, measure in enumerate(measures):
        sel = {name: ds.sel(measure=measure) for name, ds in datasets.items()}
        suffix = "" if k == 0 else f"_{measure}"
        fig2(sel, out, suffix, measure, count, seed)
        fig3(sel, out, suffix, measure)
        fig5(sel, out, suffix, measure)
        written += [f"fig2_crossmodal{suffix}", f"fig3_crosslingual{suffix}", f"fig5_last_layer{suffix}"]
        for name in ("crosslayer_text", "crosslayer_speech", "crosslayer_text_speech"):
            if all(name in ds for ds in sel.values()):
                heatmap(sel, name, out, suffix, measure)
                written.append(f"{name}{suffix}")
    return written


def _axes(n: int, width: float = 5.0, height: float = 3.6):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, axes[0]


def _save(fig, out: Path, name: str, frame: pd.DataFrame | None = None) -> None:
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(out / f"{name}.{ext}", dpi=150)
    plt.close(fig)
    if frame is not None:
        frame.to_csv(out / f"{name}.csv", index=False, float_format="%.6f")


def _ticks(ax, depths, labels) -> None:
    ax.set_xticks(list(depths))
    ax.set_xticklabels(list(labels), rotation=90, fontsize=7)


def _band(ax, x, lo, hi, color) -> None:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    if np.isfinite(lo).any():
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)


def _source(frame: pd.DataFrame) -> str:
    """The interval drawn: the sentence bootstrap where it ran, else the language bootstrap."""
    return "sentences" if frame["sentences_low"].notna().any() else "languages"


def fig2(datasets: dict, out: Path, suffix: str, measure: str, count: int, seed: int) -> None:
    fig, axes = _axes(len(datasets))
    frames = []
    for ax, (model, ds) in zip(axes, datasets.items()):
        table = tables.crossmodal_by_level(ds, count, seed)
        frames.append(table.assign(model=model))
        src = _source(table)
        for group in ("all",) + tables.LEVELS:
            t = table[table.group == group]
            if len(t):
                ax.plot(t.depth, t["mean"], marker="o", ms=3, color=COLORS[group], lw=2 if group == "all" else 1,
                        label=group)
                _band(ax, t.depth, t[f"{src}_low"], t[f"{src}_high"], COLORS[group])
        t = table[table.group == "all"]
        ax.plot(t.depth, t.null_mean, ls="-.", color="gray", lw=1.2, label=CHANCE)
        ax.plot(t.depth, t.baseline, ls="--", color="gray", lw=0.8, alpha=0.3, label=RANDOM)
        _ticks(ax, ds.pair_depth.values, ds.pair.values)
        text_input = (ds.attrs.get("options") or {}).get("text_input")
        label = f", text {text_input}" if text_input else ""  # audio LLMs: transcript in the joint pass or alone
        ax.set(title=f"{model}: cross-modal (text vs speech{label})", xlabel="point",
               ylabel=f"raw {measure} (95 % interval: {src})\nfindings subtract the chance line", ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
    _save(fig, out, "fig2_crossmodal" + suffix, pd.concat(frames))


def fig3(datasets: dict, out: Path, suffix: str, measure: str) -> None:
    fig, axes = _axes(len(datasets))
    frames = []
    for ax, (model, ds) in zip(axes, datasets.items()):
        table = tables.crosslingual(ds)
        frames.append(table.assign(model=model))
        src = _source(table)
        for modality in ("text", "speech"):
            t = table[table.modality == modality]
            ax.plot(t.depth, t["mean"], marker="o", ms=3, color=COLORS[modality], label=modality)
            _band(ax, t.depth, t[f"{src}_low"], t[f"{src}_high"], COLORS[modality])
            ax.plot(t.depth, t.null_mean, ls="-.", color=COLORS[modality], lw=1.2, label=f"{modality} {CHANCE}")
            ax.plot(t.depth, t.baseline, ls="--", color=COLORS[modality], lw=0.8, alpha=0.25,
                    label=f"{modality}: {RANDOM}")
        _ticks(ax, ds.speech_depth.values, ds.speech_point.values)
        ax.set(title=f"{model}: cross-lingual, mean over language pairs", xlabel="point",
               ylabel=f"raw {measure} (95 % interval: {src})\nfindings subtract the chance lines", ylim=(-0.02, 1.02))
        ax.legend(fontsize=6)
    _save(fig, out, "fig3_crosslingual" + suffix, pd.concat(frames))


def fig5(datasets: dict, out: Path, suffix: str, measure: str) -> None:
    fig, axes = _axes(len(datasets), width=max(6.0, 0.28 * max(len(ds.lang) for ds in datasets.values())))
    frames = []
    for ax, (model, ds) in zip(axes, datasets.items()):
        pair = tables.fig5_pair(ds)
        table = tables.per_language(ds, pair)
        frames.append(table.assign(model=model, pair=pair))
        x = np.arange(len(table))
        for offset, (key, label, color) in enumerate((("text", "cross-lingual text", "text"),
                                                     ("speech", "cross-lingual speech", "speech"),
                                                     ("text_speech", "text vs other languages' speech", "all"))):
            ax.vlines(x + (offset - 1) * 0.2, table[f"{key}_min"], table[f"{key}_max"], color=COLORS[color], lw=2,
                      label=f"{label} (range)")
        if table.crossmodal_low.notna().any():  # a percentile interval need not contain the estimate
            ax.vlines(x, table.crossmodal_low, table.crossmodal_high, color="tab:red", lw=0.8, alpha=0.6)
        ax.scatter(x, table.crossmodal, color="tab:red", zorder=3, s=14, label="cross-modal, same language")
        # chance beside the score it is the chance of: the cross-modal dot and the cross-lingual text range (6 pt
        # ticks: legible with 30 languages, where the columns stand about 3.5 pt apart)
        ax.scatter(x, table.crossmodal_chance, marker="_", s=36, lw=1.5, color="dimgray", zorder=4,
                   label=f"cross-modal {CHANCE}")
        ax.scatter(x - 0.2, table.text_chance, marker="_", s=36, lw=1.5, color="darkgray", zorder=4,
                   label=f"cross-lingual text {CHANCE}, mean over pairs")
        ax.set_xticks(list(x))
        ax.set_xticklabels(list(table.lang), rotation=90, fontsize=7)
        ax.set(title=f"{model}: per language at point {pair}", ylabel=f"raw {measure}; gray ticks: chance",
               ylim=(-0.02, 1.02))
        ax.legend(fontsize=6)
    _save(fig, out, "fig5_last_layer" + suffix, pd.concat(frames))


def heatmap(datasets: dict, name: str, out: Path, suffix: str, measure: str) -> None:
    """The cross-layer family averaged over languages: rows the first point, columns the second."""
    fig, axes = _axes(len(datasets), width=5.0, height=4.4)
    frames = []
    for ax, (model, ds) in zip(axes, datasets.items()):
        mean = results.view(ds, name).mean
        rows, cols = mean.dims
        values = mean.values.copy()
        if name != "crosslayer_text_speech":
            np.fill_diagonal(values, 1.0)  # a point against itself
        im = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", origin="lower")
        ax.set_yticks(range(values.shape[0]))
        ax.set_yticklabels(list(ds[rows].values), fontsize=6)
        ax.set_xticks(range(values.shape[1]))
        ax.set_xticklabels(list(ds[cols].values), fontsize=6, rotation=90)
        ax.set(title=f"{model}: {name.replace('_', ' ')}", ylabel=rows, xlabel=cols)
        fig.colorbar(im, ax=ax, label=f"{measure}, mean over languages")
        frames.append(mean.to_dataframe(name="mean").reset_index().assign(model=model))
    _save(fig, out, name + suffix, pd.concat(frames))
