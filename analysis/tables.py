"""The numbers behind each figure, as pandas-free lists of rows computed from one model's similarity Dataset."""

from __future__ import annotations

import numpy as np
import xarray as xr

LEVELS = ("high", "medium", "low")


def crossmodal_by_level(ds: xr.Dataset) -> list[tuple]:
    """(pair, depth, group, mean, n_languages) for group in all + resource levels: Fig. 2."""
    rows = []
    for pair, depth in zip(ds.pair.values, ds.pair_depth.values):
        values = ds.crossmodal.sel(pair=pair)
        for group in ("all",) + LEVELS:
            sel = values if group == "all" else values.where(ds.level == group, drop=True)
            if sel.size:
                rows.append((str(pair), float(depth), group, float(sel.mean()), int(sel.size)))
    return rows


def upper(matrix: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(matrix.shape[-1], k=1)
    return matrix[..., i, j]


def crosslingual(ds: xr.Dataset) -> list[tuple]:
    """(modality, point, depth, mean, std, n_pairs) over all language pairs: Fig. 3."""
    rows = []
    for modality, dim in (("text", "text_point"), ("speech", "speech_point")):
        depths = ds[dim.replace("point", "depth")].values
        for point, depth in zip(ds[dim].values, depths):
            v = upper(ds[modality].sel({dim: point}).values)
            rows.append((modality, str(point), float(depth), float(v.mean()), float(v.std()), int(v.size)))
    return rows


def last_layer_pair(ds: xr.Dataset) -> str:
    """The deepest numbered layer compared across modalities (falls back to the deepest pair)."""
    numbered = [p for p in ds.pair.values if str(p).isdigit()]
    if numbered:
        return max(numbered, key=int)
    return str(ds.pair.values[int(np.argmax(ds.pair_depth.values))])


def per_language(ds: xr.Dataset, pair: str) -> list[tuple]:
    """(lang, level, crossmodal, text min/max, speech min/max, text->speech min/max) at one pair: Fig. 5."""
    t_point, s_point = str(ds.pair_text_point.sel(pair=pair).values), str(ds.pair_speech_point.sel(pair=pair).values)
    text = ds.text.sel(text_point=t_point).values
    speech = ds.speech.sel(speech_point=s_point).values
    ts = ds.text_speech.sel(pair=pair).values
    rows = []
    for i, lang in enumerate(ds.lang.values):
        others = [j for j in range(len(ds.lang)) if j != i]
        rows.append((str(lang), str(ds.level.values[i]), float(ds.crossmodal.sel(pair=pair).values[i]),
                     float(text[i, others].min()), float(text[i, others].max()),
                     float(speech[i, others].min()), float(speech[i, others].max()),
                     float(ts[i, others].min()), float(ts[i, others].max())))
    return rows


def write_csv(path, header: tuple[str, ...], rows: list[tuple]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(f"{v:.6f}" if isinstance(v, float) else str(v) for v in row) + "\n")
