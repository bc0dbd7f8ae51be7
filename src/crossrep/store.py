"""The activation store: Zarr v3 at `<out>/activations.zarr`, one group per shard `<model>/<modality>/<lang>`.

This module owns the on-disk conventions; everything else gets typed objects (`StorePlan`, `ModelPlan`,
`ShardKey`, `ShardState`, `Damage`). Each shard group holds `sentence` (FLEURS sentence ids, ascending; with
`data.utterances: all` a speech shard has one row per recording, the key repeated and its kept recording first,
beside `recording` and `speaker` string arrays) and one float32 array per point (sentences x features,
dimension names `sentence`, `feature_<point>`), so `xarray.open_zarr(path, group="seamless/text/eng")` reads
it. Arrays use Zarr's sharding codec with one shard file per `chunk_size` sentences, inner chunks compressed then
CRC32C-checksummed: a chunk of work is written as whole files, each an atomic write, and every byte of it can be
verified later.

Attributes: the root's `crossrep` (layout version, the job settings the store was made with, chunk size), each
model group's plan (adapter, checkpoint, options, languages, points, pairs, sentence id sets) and each shard
group's progress (`chunks_done`, then `complete`, written last, or `error`). The whole hierarchy is created
before any worker starts; workers only write array data and their own shard group's attributes.

A path inside the output folder (a tiny checkpoint in `<out>/checkpoints`, data kept in `out`) is recorded
relative to it, as `<out>/...` (`portable`), and read back against the folder the store is in now (`located`):
a copied or moved output folder verifies, resumes and repairs in its new place. An absolute path recorded by an
earlier version reads as before, and compares equal where it names the same place.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from . import progress
from .errors import StoreError
from .paths import located, portable
from .point import LENS_FIELDS, LENS_TOP, Point

LAYOUT = 3
TIMING_DIR = "activations.timing"  # beside FILENAME: per-shard timing records (crossrep.timing)
FILENAME = "activations.zarr"
MODALITIES = ("text", "speech")


# ---------------------------------------------------------------- typed records


@dataclass(frozen=True, order=True)
class ShardKey:
    """One unit of extraction work: a model, a modality, a language (its group in the store)."""

    model: str
    modality: str
    lang: str

    def __str__(self) -> str:
        return f"{self.model}/{self.modality}/{self.lang}"

    @property
    def key(self) -> str:
        return str(self)

    @classmethod
    def parse(cls, text: str) -> "ShardKey":
        parts = text.strip("/").split("/")
        if len(parts) != 3 or parts[1] not in MODALITIES:
            raise StoreError(f"{text!r} is not a shard key MODEL/MODALITY/LANG (modality text or speech)")
        return cls(*parts)


@dataclass(frozen=True)
class ModelPlan:
    """Everything the store records of one model: what was loaded and what every shard of it holds."""

    name: str
    adapter: str
    checkpoint: Any  # resolved: a hub id or absolute local path, or a mapping of them (`<out>/...` on disk)
    options: dict
    languages: tuple[str, ...]
    points: dict[str, tuple[Point, ...]]  # modality -> points in model order
    pairs: tuple[tuple[str, str, str], ...]  # cross-modal comparisons: (label, text point, speech point)
    crossmodal_ids: dict[str, tuple[int, ...]]  # language -> its first N sentence ids
    crosslingual_ids: tuple[int, ...]  # the first M ids shared by all languages
    shard_ids: dict[str, tuple[int, ...]]  # language -> the ids its shards hold (both modalities)
    lens: tuple[str, ...] = ()  # decoder points read by the logit lens (speech shards); empty: no lens
    lens_k: int = 0  # the job's k of recall@k
    # data.utterances all: language -> the speech shard's rows (key, recording, speaker or ""), every recording of
    # each key of shard_ids, the kept one first; empty: one row per key
    recordings: dict[str, tuple[tuple[int, str, str], ...]] = field(default_factory=dict)

    def rows(self, modality: str, lang: str) -> tuple[int, ...]:
        """The key of each row of a shard: its shard ids, or for speech with every recording, one per recording."""
        if modality == "speech" and self.recordings:
            return tuple(sid for sid, _, _ in self.recordings[lang])
        return self.shard_ids[lang]

    def arrays(self, modality: str) -> tuple[str, ...]:
        """The shard arrays beside `sentence`: one per point, and per lens point its scores and top ids."""
        lens = [f"{kind}_{p}" for p in self.lens for kind in ("lens", "lenstop")] if modality == "speech" else []
        return tuple(p.name for p in self.points[modality]) + tuple(lens)

    def point(self, modality: str, name: str) -> Point:
        for p in self.points[modality]:
            if p.name == name:
                return p
        raise StoreError(f"model {self.name}: {modality} has no point {name!r} (have "
                         f"{', '.join(p.name for p in self.points[modality])})")

    def to_attrs(self, out: Path | None = None) -> dict:
        """The model group's attributes; with `out`, paths inside it recorded relative to it (`portable`)."""
        rel = (lambda v: v) if out is None else (lambda v: portable(v, out))
        return {
            "name": self.name, "adapter": self.adapter, "checkpoint": rel(self.checkpoint),
            "options": rel(self.options),
            "languages": list(self.languages),
            "points": {mod: [{"name": p.name, "width": p.width, "depth": p.depth, "kind": p.kind} for p in pts]
                       for mod, pts in self.points.items()},
            "pairs": [list(p) for p in self.pairs],
            "crossmodal_ids": {lang: list(ids) for lang, ids in self.crossmodal_ids.items()},
            "crosslingual_ids": list(self.crosslingual_ids),
            "shard_ids": {lang: list(ids) for lang, ids in self.shard_ids.items()},
            **({"lens": list(self.lens), "lens_k": self.lens_k} if self.lens else {}),
            **({"recordings": {lang: [list(r) for r in rows] for lang, rows in self.recordings.items()}}
               if self.recordings else {}),
        }

    @classmethod
    def from_attrs(cls, a: dict, where: str, out: Path | None = None) -> "ModelPlan":
        """The plan from a model group's attributes; with `out`, `<out>/...` paths located in it (`located`)."""
        at = (lambda v: v) if out is None else (lambda v: located(v, out))
        try:
            return cls(
                name=a["name"], adapter=a["adapter"], checkpoint=at(a["checkpoint"]), options=dict(at(a["options"])),
                languages=tuple(a["languages"]),
                points={mod: tuple(Point(p["name"], int(p["width"]), float(p["depth"]), p["kind"]) for p in pts)
                        for mod, pts in a["points"].items()},
                pairs=tuple(tuple(p) for p in a["pairs"]),
                crossmodal_ids={lang: tuple(int(i) for i in ids) for lang, ids in a["crossmodal_ids"].items()},
                crosslingual_ids=tuple(int(i) for i in a["crosslingual_ids"]),
                shard_ids={lang: tuple(int(i) for i in ids) for lang, ids in a["shard_ids"].items()},
                lens=tuple(a.get("lens", ())), lens_k=int(a.get("lens_k", 0)),
                recordings={lang: tuple((int(sid), str(f), str(spk)) for sid, f, spk in rows)
                            for lang, rows in a.get("recordings", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{where}: model attributes unreadable ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class StorePlan:
    """The whole store: the job settings it was made with, its chunk size and every model's plan."""

    job: dict  # the job settings a resume must share (see plan.fingerprint)
    chunk_size: int
    models: tuple[ModelPlan, ...]

    def model(self, name: str) -> ModelPlan:
        for m in self.models:
            if m.name == name:
                return m
        raise StoreError(f"the store has no model {name!r} (it has {', '.join(m.name for m in self.models)})")

    def shards(self) -> list[ShardKey]:
        """Every shard, in the job's fixed order (model, modality, language)."""
        return [ShardKey(m.name, mod, lang) for m in self.models for mod in MODALITIES for lang in m.languages]

    def differences(self, other: "StorePlan") -> list[str]:
        """`key: stored X, requested Y` for every setting or planned value that differs (self is stored)."""
        return differences(self._comparable(), other._comparable())

    def _comparable(self) -> dict:
        return {**self.job, "plan": {m.name: m.to_attrs() for m in self.models}}


@dataclass(frozen=True)
class ShardState:
    key: ShardKey
    n_chunks: int
    chunks_done: tuple[int, ...]
    complete: bool
    error: str | None
    exists: bool = True
    timing: dict | None = None  # the last run that computed chunks: seconds per stage (crossrep.timing), etc.

    @property
    def status(self) -> str:
        if not self.exists:
            return "missing"
        if self.complete:
            return "complete"
        if self.error:
            return "failed"
        return "partial" if self.chunks_done else "missing"


@dataclass(frozen=True)
class Damage:
    """A chunk recorded as done whose data is not all there: what `verify` found and where."""

    key: ShardKey
    point: str
    chunk: int
    file: Path
    problem: str

    def __str__(self) -> str:
        where = "" if self.chunk < 0 else f" point {self.point} chunk {self.chunk}"
        return f"{self.key}{where}: {self.problem} ({self.file})"


def chunk_rows(n: int, chunk_size: int, index: int) -> slice:
    return slice(index * chunk_size, min(n, (index + 1) * chunk_size))


# ---------------------------------------------------------------- the store


def id_rows(stored: np.ndarray, ids, where: str) -> np.ndarray:
    """The rows of `ids` in a shard whose rows hold the ascending `stored` ids (a key repeated where a speech shard
    holds all its recordings: its first row, the kept recording); an error naming `where` if any is not stored."""
    rows = np.searchsorted(stored, ids)
    if np.any(rows >= len(stored)) or np.any(stored[np.minimum(rows, len(stored) - 1)] != ids):
        raise StoreError(f"{where}: some requested sentence ids are not stored")
    return rows


class ActivationStore:
    """An existing store, opened after checking its layout; `create` makes or checks one from a plan."""

    def __init__(self, out: Path, mode: str = "r"):
        self.path = Path(out) / FILENAME
        info = _root_info(self.path)
        if info == "missing" and not (self.path.is_dir() and any(self.path.iterdir())):
            raise StoreError(f"{self.path}: no activation store (run the extract stage first)")
        if not isinstance(info, dict):
            raise StoreError(damaged_root_message(self.path))
        if info.get("layout") != LAYOUT:
            raise StoreError(f"{self.path}: store layout {info.get('layout')!r}, written by another crossrep "
                             f"version; this one reads layout {LAYOUT}. Use the version that wrote it, or move "
                             f"the folder away to start anew (nothing was changed)")
        self.root = zarr.open_group(str(self.path), mode=mode, zarr_format=3)
        self.plan = _plan_from(info, self.root, self.path)

    # ------------------------------------------------------------------ creation

    @classmethod
    def create(cls, out: Path, plan: StorePlan) -> "ActivationStore":
        """Create the hierarchy for `plan`, or check that an existing store has the same plan and re-create any
        shard group or array that has gone missing (its verified chunks kept)."""
        path = Path(out) / FILENAME
        if path.is_dir() and _root_info(path) == "missing" and not any(path.glob("**/c/*/0")):
            return cls._finish(out, plan)  # a creation that was interrupted (no chunk data yet): complete it
        if (path / "zarr.json").is_file() or (path.is_dir() and any(path.iterdir())):
            store = cls(out, mode="r+")
            diff = store.plan.differences(plan)
            if diff:
                raise StoreError(f"{path}: made by a different job; nothing was changed. It differs in:\n  "
                                 + "\n  ".join(diff) + "\nUse the stored settings, another `out` folder, or move "
                                 "this store away")
            store.ensure()
            return store
        return cls._finish(out, plan)

    @classmethod
    def _finish(cls, out: Path, plan: StorePlan) -> "ActivationStore":
        """Create every group and array that is not there yet, then the root's record (written last)."""
        root = zarr.open_group(str(Path(out) / FILENAME), mode="a", zarr_format=3)
        for m in plan.models:
            root.require_group(m.name).attrs.put(m.to_attrs(out))
            for modality in MODALITIES:
                for lang in m.languages:
                    _create_shard(root, m, ShardKey(m.name, modality, lang), plan.chunk_size)
        root.attrs["crossrep"] = _root_record(plan, out)  # written last: a root with its record has its whole hierarchy
        return cls(out, mode="r+")

    @classmethod
    def rebuild(cls, out: Path, plan: StorePlan) -> tuple["ActivationStore", int]:
        """Write the root metadata of a store whose root is missing or unreadable from `plan`, re-create every
        missing group and array, and record as done each chunk whose files all verify. Deletes nothing.
        Returns the store and the number of chunks kept."""
        path = Path(out) / FILENAME
        if not path.is_dir():
            raise StoreError(f"{path}: no store folder to repair")
        meta = path / "zarr.json"
        state = _root_info(path)
        if isinstance(state, dict):
            raise StoreError(f"{path}: the root metadata is readable; nothing to repair "
                             f"(`crossrep status --verify` checks the chunks)")
        if state == "unreadable":
            meta.rename(meta.with_name(f"zarr.json.unreadable.{os.getpid()}"))
        root = zarr.open_group(str(path), mode="a", zarr_format=3)
        root.attrs["crossrep"] = _root_record(plan, out)
        store = cls(out, mode="r+")
        for m in plan.models:
            try:
                ModelPlan.from_attrs(dict(store.root[m.name].attrs), f"{path}/{m.name}", out)
            except (KeyError, StoreError):
                store.root.require_group(m.name).attrs.put(m.to_attrs(out))
        store.plan = plan
        kept = store.ensure(adopt_all=True)
        return store, kept

    def ensure(self, adopt_all: bool = False) -> int:
        """Re-create missing shard groups and arrays from the plan, without touching existing chunk files; a
        re-created group (every group with `adopt_all`) records as done each chunk whose files all verify."""
        kept = 0
        for key in self.plan.shards():
            m = self.plan.model(key.model)
            fresh = _create_shard(self.root, m, key, self.plan.chunk_size)
            if fresh or adopt_all:
                state = self.state(key)
                found = [c for c in range(state.n_chunks) if c not in state.chunks_done
                         and all((self._dir(key) / p.name / "c" / str(c) / "0").is_file()
                                 for p in m.points[key.modality])]
                bad = {d.chunk for d in self._verify_chunks(key, found)}
                good = sorted(set(state.chunks_done) | {c for c in found if c not in bad})
                if good != list(state.chunks_done):
                    kept += len(good) - len(state.chunks_done)
                    complete = len(good) == state.n_chunks
                    self._group(key).attrs.update({"chunks_done": good, "complete": complete})
        return kept

    # ------------------------------------------------------------------ reading

    def model(self, name: str) -> ModelPlan:
        return self.plan.model(name)

    def _dir(self, key: ShardKey) -> Path:
        return self.path / key.model / key.modality / key.lang

    def _group(self, key: ShardKey) -> zarr.Group:
        try:
            return self.root[str(key)]
        except KeyError:
            raise StoreError(f"{self.path}: no shard group {key} (run the same command again: `run`, `resume` "
                             f"and `extract` re-create it from the plan)") from None

    def state(self, key: ShardKey) -> ShardState:
        try:
            attrs = dict(self.root[str(key)].attrs)
            return ShardState(key, int(attrs["n_chunks"]), tuple(int(c) for c in attrs["chunks_done"]),
                              bool(attrs["complete"]), attrs.get("error"), timing=self.timing(key))
        except (KeyError, ValueError, TypeError):
            n = len(self.plan.model(key.model).rows(key.modality, key.lang))
            return ShardState(key, math.ceil(n / self.plan.chunk_size), (), False, None, exists=False)

    def points(self, key: ShardKey) -> tuple[str, ...]:
        return tuple(p.name for p in self.plan.model(key.model).points[key.modality])

    def ids(self, key: ShardKey) -> np.ndarray:
        """The key of each row of the shard (ascending; repeated for the recordings of `data.utterances: all`)."""
        return np.asarray(self.plan.model(key.model).rows(key.modality, key.lang), dtype=np.int64)

    def read(self, key: ShardKey, point: str, ids: list[int] | np.ndarray | None = None) -> np.ndarray:
        """A point's activations for the shard (rows in ascending id order), optionally only the given ids (their
        kept recordings)."""
        data = self._group(key)[point][:]
        if ids is None:
            return data
        return data[id_rows(self.ids(key), ids, f"{self.path}/{key}")]

    # ------------------------------------------------------------------ verification

    def verify(self, keys: Iterable[ShardKey] | None = None, threads: int = 4) -> list[Damage]:
        """Read every chunk recorded as done: file present, readable, checksums, every value finite."""
        keys = list(self.plan.shards() if keys is None else keys)
        work = [(k, self.state(k)) for k in keys]
        missing = [Damage(k, "-", -1, self._dir(k), "shard group missing; `run` re-creates it from the plan")
                   for k, st in work if not st.exists]
        with ThreadPoolExecutor(max_workers=threads) as pool, progress.bar(len(work), "verify", "shard") as bar:
            found = []
            for part in pool.map(lambda ks: self._verify_chunks(ks[0], list(ks[1].chunks_done)), work):
                found += part
                bar.update()
            return missing + found

    def _verify_chunks(self, key: ShardKey, chunks: list[int]) -> list[Damage]:
        if not chunks:
            return []
        try:
            group = self.root[str(key)]
        except KeyError:
            return [Damage(key, "-", c, self._dir(key), "shard group missing") for c in chunks]
        n = len(self.plan.model(key.model).rows(key.modality, key.lang))
        out = []
        for point in self.plan.model(key.model).arrays(key.modality):
            try:
                arr = group[point]
            except KeyError:
                out += [Damage(key, point, c, self._dir(key) / point, "array missing") for c in chunks]
                continue
            for c in chunks:
                file = self._dir(key) / point / "c" / str(c) / "0"
                if not file.is_file():
                    out.append(Damage(key, point, c, file, "file missing"))
                    continue
                try:
                    values = arr[chunk_rows(n, self.plan.chunk_size, c)]
                except Exception as exc:  # checksum mismatch, truncated index, codec errors
                    out.append(Damage(key, point, c, file, f"unreadable ({type(exc).__name__}: {exc})"))
                    continue
                if not np.isfinite(values).all():
                    out.append(Damage(key, point, c, file, "NaN or infinite values (missing inner chunks)"))
        return out

    def forget(self, damages: list[Damage]) -> None:
        """Mark the damaged chunks not done, so that the next extraction recomputes exactly those."""
        by_key: dict[ShardKey, set[int]] = {}
        for d in damages:
            by_key.setdefault(d.key, set()).add(d.chunk)
        for key, chunks in by_key.items():
            if str(key) not in self.root:
                continue  # re-created from the plan by `ensure`
            state = self.state(key)
            self._group(key).attrs.update({"chunks_done": [c for c in state.chunks_done if c not in chunks],
                                           "complete": False})

    # ------------------------------------------------------------------ writing (one owner per shard group)

    def write_chunk(self, key: ShardKey, index: int, values: dict[str, np.ndarray]) -> None:
        g = self._group(key)
        rows = chunk_rows(len(self.plan.model(key.model).rows(key.modality, key.lang)), self.plan.chunk_size, index)
        for point, data in values.items():
            # a chunk not recorded as done may hold a damaged file, which Zarr would read before writing over it
            (self._dir(key) / point / "c" / str(index) / "0").unlink(missing_ok=True)
            g[point][rows] = data
        done = sorted(set(self.state(key).chunks_done) | {index})
        g.attrs.update({"chunks_done": done})

    def mark(self, key: ShardKey, *, complete: bool = False, error: str | None = None) -> None:
        self._group(key).attrs.update({"complete": complete, "error": error})

    def _timing_file(self, key: ShardKey) -> Path:
        # beside the store, not in it: a resumed store stays byte-identical to an uninterrupted one
        return self.path.parent / TIMING_DIR / key.model / key.modality / f"{key.lang}.json"

    def record_timing(self, key: ShardKey, timing: dict) -> None:
        """Where the last extraction run of a shard spent its time (JSON: seconds per stage, sentences,
        batches, padding share, feature workers, device), in <out>/activations.timing/MODEL/MODALITY/LANG.json."""
        path = self._timing_file(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(timing, indent=1))

    def timing(self, key: ShardKey) -> dict | None:
        try:
            return json.loads(self._timing_file(key).read_text())
        except (OSError, ValueError):
            return None


def _root_record(plan: StorePlan, out: Path) -> dict:
    return {"layout": LAYOUT, "job": portable(plan.job, out), "chunk_size": plan.chunk_size, "models": [m.name for m in plan.models]}


def _root_info(path: Path) -> dict | str:
    """The root's crossrep record; "missing" (no root zarr.json, or one without the record: a creation that
    did not finish) or "unreadable"."""
    try:
        attrs = json.loads((path / "zarr.json").read_text(encoding="utf-8"))["attributes"]
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable"
    info = attrs.get("crossrep") if isinstance(attrs, dict) else None
    return info if isinstance(info, dict) else "missing"


def damaged_root_message(path: Path) -> str:
    files = sum(len(f) for _, _, f in os.walk(path))
    return (f"{path}: the root metadata (zarr.json) is missing or unreadable, but the folder holds {files} files; "
            f"nothing was changed or deleted. `crossrep repair JOB` rebuilds the metadata from the job's plan "
            f"and keeps every chunk that verifies; or move the folder away to start anew")


def _create_shard(root: zarr.Group, m: ModelPlan, key: ShardKey, chunk_size: int) -> bool:
    """Create a shard group and its arrays where missing (never overwriting); True if the group was new."""
    ids = m.rows(key.modality, key.lang)
    n = len(ids)
    fresh = str(key) not in root
    g = root.require_group(str(key))
    if fresh or "n_chunks" not in g.attrs:
        fresh = True
        g.attrs.put({"model": key.model, "modality": key.modality, "language": key.lang,
                     "points": [p.name for p in m.points[key.modality]], "chunk_size": chunk_size,
                     "n_chunks": math.ceil(n / chunk_size), "chunks_done": [], "complete": False, "error": None})
    if "sentence" not in g:
        arr = g.create_array("sentence", shape=(n,), dtype="int64", chunks=(n,), dimension_names=["sentence"],
                             fill_value=-1)
        arr[:] = np.asarray(ids, dtype=np.int64)
    if key.modality == "speech" and m.recordings:  # who read each row, and which file it is
        for column, name in ((1, "recording"), (2, "speaker")):
            if name not in g:
                arr = g.create_array(name, shape=(n,), dtype=str, chunks=(n,), dimension_names=["sentence"])
                arr[:] = np.array([r[column] for r in m.recordings[key.lang]])
    for p in m.points[key.modality]:
        if p.name in g:
            continue
        inner = math.gcd(chunk_size, 16)
        g.create_array(p.name, shape=(n, p.width), dtype="float32", chunks=(inner, p.width),
                       shards=(chunk_size, p.width), compressors=[ZstdCodec(), Crc32cCodec()],
                       dimension_names=["sentence", f"feature_{p.name}"], fill_value=np.nan)
    if key.modality == "speech":
        for p in m.lens:  # the logit lens: scores (LENS_FIELDS) and the mean audio state's top ids
            for name, width, dtype, dim, fill in ((f"lens_{p}", len(LENS_FIELDS), "float32", "lens_field", np.nan),
                                                  (f"lenstop_{p}", LENS_TOP, "int32", "rank", -1)):
                if name not in g:
                    g.create_array(name, shape=(n, width), dtype=dtype, chunks=(math.gcd(chunk_size, 16), width),
                                   shards=(chunk_size, width), compressors=[ZstdCodec(), Crc32cCodec()],
                                   dimension_names=["sentence", dim], fill_value=fill)
    return fresh


def _plan_from(info: dict, root: zarr.Group, path: Path) -> StorePlan:
    models = []
    for name in info.get("models", []):
        try:
            attrs = dict(root[name].attrs)
        except KeyError:
            raise StoreError(f"{path}/{name}: model group missing; `crossrep repair JOB` rebuilds it from the "
                             f"job's plan (nothing was changed)") from None
        models.append(ModelPlan.from_attrs(attrs, f"{path}/{name}", path.parent))
    # the job settings as `plan.fingerprint` gives them: an absolute path inside `out` that an earlier version
    # recorded reads as the portable form it has now
    return StorePlan(job=portable(info.get("job", {}), path.parent), chunk_size=int(info["chunk_size"]),
                     models=tuple(models))


def differences(stored: dict, requested: dict) -> list[str]:
    """`key: stored X, requested Y` for every dotted key whose values differ (compared as JSON would store them)."""
    a, b = (_flatten(json.loads(json.dumps(d))) for d in (stored, requested))
    return [f"{k}: stored {_short(a.get(k, '(absent)'))}, requested {_short(b.get(k, '(absent)'))}"
            for k in sorted(set(a) | set(b), key=_natural) if a.get(k, ...) != b.get(k, ...)]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: list(value) if isinstance(value, tuple) else value}


def _short(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _natural(key: str) -> tuple:
    return (key.startswith("plan."), key)

