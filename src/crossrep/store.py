"""The activation store: Zarr v3 at `<out>/activations.zarr`, one group per shard `<model>/<modality>/<lang>`.

Each shard group holds `sentence` (FLEURS sentence ids, ascending) and one float32 array per point
(sentences x features, dimension names `sentence`, `feature_<point>`), so `xarray.open_zarr(path,
group="seamless/text/eng")` reads it. Arrays use Zarr's sharding codec with one shard per `chunk_size`
sentences: a chunk of work is written as whole shards, each an atomic file write, so no two writers ever touch
one file. Progress lives in the shard group's attributes: `chunks_done`, then `complete` (the completion
marker, written last) or `error`. The whole hierarchy is created before any worker starts; workers only write
array data and their own group's attributes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .errors import StoreError

LAYOUT = 1
FILENAME = "activations.zarr"


@dataclass(frozen=True)
class Shard:
    """One unit of extraction work: a model, a modality, a language."""

    index: int
    model: str
    modality: str
    lang: str

    @property
    def key(self) -> str:
        return f"{self.model}/{self.modality}/{self.lang}"


@dataclass(frozen=True)
class ShardState:
    shard: Shard
    n_chunks: int
    chunks_done: tuple[int, ...]
    complete: bool
    error: str | None
    exists: bool = True

    @property
    def status(self) -> str:
        if not self.exists:
            return "missing"
        if self.complete:
            return "complete"
        if self.error:
            return "failed"
        return "partial" if self.chunks_done else "missing"


def chunk_rows(n: int, chunk_size: int, index: int) -> slice:
    return slice(index * chunk_size, min(n, (index + 1) * chunk_size))


class ActivationStore:
    def __init__(self, out: Path, mode: str = "r"):
        self.path = Path(out) / FILENAME
        if mode == "r" and not (self.path / "zarr.json").is_file():
            raise StoreError(f"{self.path}: no activation store (run the extract stage first)")
        self.root = zarr.open_group(str(self.path), mode=mode, zarr_format=3)

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(cls, out: Path, plan: dict[str, Any], models: list[dict[str, Any]], chunk_size: int) -> "ActivationStore":
        """Create the hierarchy for `models` (see plan.py), or check that an existing store has the same plan."""
        path = Path(out) / FILENAME
        if (path / "zarr.json").is_file():
            store = cls(out, mode="r+")
            old = store.plan
            if old != plan:
                diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
                raise StoreError(f"{path}: made by a different job (differs in {', '.join(diff)}); "
                                 f"use another `out` folder or delete this store")
            return store
        store = cls(out, mode="w")
        for m in models:
            group = store.root.create_group(m["name"], attributes={k: v for k, v in m.items() if k != "shards"})
            for modality, per_lang in m["shards"].items():
                for lang, ids in per_lang.items():
                    g = group.create_group(f"{modality}/{lang}")
                    n = len(ids)
                    arr = g.create_array("sentence", shape=(n,), dtype="int64", chunks=(n,),
                                         dimension_names=["sentence"], fill_value=-1)
                    arr[:] = np.asarray(ids, dtype=np.int64)
                    for p in m["points"][modality]:
                        width = p["width"]
                        inner = math.gcd(chunk_size, 16)
                        g.create_array(p["name"], shape=(n, width), dtype="float32",
                                       chunks=(inner, width), shards=(chunk_size, width),
                                       dimension_names=["sentence", f"feature_{p['name']}"], fill_value=np.nan)
                    g.attrs.update({"model": m["name"], "modality": modality, "language": lang,
                                    "points": [p["name"] for p in m["points"][modality]],
                                    "chunk_size": chunk_size, "n_chunks": math.ceil(n / chunk_size),
                                    "chunks_done": [], "complete": False, "error": None})
        # Written last: a store whose root carries the plan has its whole hierarchy.
        store.root.attrs["crossrep"] = {"layout": LAYOUT, "plan": plan}
        return store

    # ------------------------------------------------------------------ reading

    @property
    def plan(self) -> dict[str, Any]:
        meta = self.root.attrs.get("crossrep")
        if not meta:
            raise StoreError(f"{self.path}: hierarchy incomplete (its creation was interrupted); delete it and rerun")
        return meta["plan"]

    def model_attrs(self, model: str) -> dict[str, Any]:
        return dict(self.root[model].attrs)

    def group(self, shard: Shard) -> zarr.Group:
        try:
            return self.root[shard.key]
        except KeyError:
            raise StoreError(f"{self.path}: no group {shard.key}") from None

    def state(self, shard: Shard) -> ShardState:
        try:
            attrs = dict(self.root[shard.key].attrs)
        except KeyError:
            return ShardState(shard, 0, (), False, None, exists=False)
        return ShardState(shard, attrs["n_chunks"], tuple(attrs["chunks_done"]), bool(attrs["complete"]),
                          attrs.get("error"))

    def ids(self, shard: Shard) -> np.ndarray:
        return self.group(shard)["sentence"][:]

    def read(self, shard: Shard, point: str, ids: list[int] | np.ndarray | None = None) -> np.ndarray:
        """A point's activations for the shard (rows in ascending id order), optionally only the given ids."""
        g = self.group(shard)
        data = g[point][:]
        if ids is None:
            return data
        stored = g["sentence"][:]
        rows = np.searchsorted(stored, ids)
        if np.any(rows >= len(stored)) or np.any(stored[np.minimum(rows, len(stored) - 1)] != ids):
            raise StoreError(f"{self.path}/{shard.key}: some requested sentence ids are not stored")
        return data[rows]

    # ------------------------------------------------------------------ writing (one owner per shard group)

    def write_chunk(self, shard: Shard, index: int, values: dict[str, np.ndarray]) -> None:
        g = self.group(shard)
        attrs = dict(g.attrs)
        rows = chunk_rows(g["sentence"].shape[0], attrs["chunk_size"], index)
        for point, data in values.items():
            g[point][rows] = data
        done = sorted(set(attrs["chunks_done"]) | {index})
        g.attrs.update({"chunks_done": done})

    def mark(self, shard: Shard, *, complete: bool = False, error: str | None = None) -> None:
        self.group(shard).attrs.update({"complete": complete, "error": error})
