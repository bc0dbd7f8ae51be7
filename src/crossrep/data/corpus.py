"""Parallel corpora in the shapes researchers hold them, behind one interface: per language, the items of a
split (a parallel key, a text, an audio reference, a speaker), one kept per key, with their texts and audio.

Formats (`data.format`):
- `fleurs`: the raw FLEURS release, `<root>/<config>/<split>.tsv` with wavs or the packed tar.gz
  (crossrep.data.fleurs);
- `parquet`: FLEURS (or FLEURS-R) as the hub's parquet export serves it, `<root>/<config>/` holding the split's
  files in any of the converter's namings (`fleurs-test.parquet`, `test-00000-of-00001.parquet`,
  `test/0000.parquet`, ...), audio as bytes embedded in the `audio` struct column, read a row group at a time and
  decoded from memory, never written to disk;
- `hf_disk`: a `datasets` `save_to_disk` folder per config, `<root>/<config>/` (a DatasetDict with one folder per
  split, or one split), its Arrow files memory-mapped with pyarrow (no `datasets` needed);
- `manifest`: one CSV, TSV, JSONL or parquet file (`data.root`) with columns `key` (the parallel key), `lang`,
  `text`, `audio` (a path relative to the manifest, or bytes in parquet), optional `speaker` and `split`;
- `auto`: detected from the files, and said.

The parallel key is crossrep's sentence id: integers as they are; string keys (a manifest's) are numbered by
their sorted order over the whole manifest. Where a key has several recordings in a language, one is kept, the
same way for every format: sorted by audio name, drawn with `data.seed` and the language (crossrep.data.fleurs);
with `data.utterances: all` the others are extracted too (`recording_rows`), each with its speaker.
"""

from __future__ import annotations

import copy
import csv
import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import languages as langs
from ..errors import DataError
from .audio import decode_wav
from .fleurs import Clip, FleursLanguage, recordings

FORMATS = ("fleurs", "parquet", "hf_disk", "manifest")
FLEURS_COLUMNS = ("id", "transcription", "audio")  # what the parquet and save_to_disk readers need
SPLIT_NAMES = {"dev": ("dev", "validation"), "test": ("test",), "train": ("train",)}


@dataclass(frozen=True)
class Item:
    """One recording of one key in one language; `audio` a path, bytes, or a (file, row group, row) reference
    into a parquet or Arrow file; `file` its name in messages and in the choice of one recording per key."""

    id: int
    file: str
    text: str
    audio: object
    speaker: str | None = None
    n_samples: int = 0
    cell: str = ""  # where the audio reference is written: a manifest's file, row and column


class _NoFolder:
    """A corpus whose audio is decoded in the extraction task (not by file name in DataLoader workers)."""

    folder = None


class CorpusLanguage:
    """One language of a split of a parallel corpus in any format but `fleurs`: the interface of
    crossrep.data.fleurs.FleursLanguage (sentences, texts, audio, clips, where)."""

    def __init__(self, iso: str, where: str, items: list[Item], seed: int, resample: bool, reader=None):
        self.lang = langs.get(iso)
        self.where, self.dir, self.tsv = where, where, where
        self.seed, self.resample = seed, resample
        self.items, self.reader = items, reader
        self.source = _NoFolder()
        if not items:
            raise DataError(f"{where}: no items for {iso}")

    @functools.cached_property
    def recordings(self) -> dict[int, list[Item]]:
        return recordings(self.items, self.lang.iso, self.seed)

    @functools.cached_property
    def sentences(self) -> dict[int, Item]:
        return {sid: group[0] for sid, group in self.recordings.items()}

    def texts(self, ids: list[int]) -> list[str]:
        return [self.sentences[i].text for i in ids]

    def audio(self, ids: list[int]) -> list[np.ndarray]:
        items = [self.sentences[i] for i in ids]
        raw = self.reader(items) if self.reader is not None else [it.audio for it in items]
        return [decode_wav(data, it.file, self.resample) for data, it in zip(raw, items)]

    def clips(self, ids: list[int]) -> list[Clip]:
        return [Clip(self.sentences[i].file, self.sentences[i].n_samples) for i in ids]

    def audio_refs(self, rows: list[Item]) -> list[tuple[object, str]] | None:
        """Each item's audio (a path or bytes) and how errors name it, for planning's header check; None where
        the audio sits in parquet or Arrow files (read a row group at a time when extracted, and checked then)."""
        if self.reader is not None:
            return None
        return [(it.audio, f"{it.cell} (bytes)" if isinstance(it.audio, (bytes, bytearray))
                 else f"{it.file} ({it.cell})") for it in rows]


def open_language(data, iso: str, fmt: str | None = None):
    """One language of the job's corpus (`data`: the job's DataConfig), in its format."""
    fmt = fmt or resolve_format(data)
    if fmt == "fleurs":
        return FleursLanguage(data.root, iso, data.split, data.seed, data.resample)
    if fmt == "manifest":
        table = read_manifest(Path(data.root))
        items = table.items(iso, data.split)
        return CorpusLanguage(iso, str(data.root), items, data.seed, data.resample)
    folder = Path(data.root) / langs.get(iso).fleurs
    if not folder.is_dir():
        raise DataError(f"{folder}: missing folder for {iso} (FLEURS config {langs.get(iso).fleurs}; "
                        f"data.format {fmt})")
    if fmt == "parquet":
        items, reader = parquet_items(folder, data.split)
    else:
        items, reader = arrow_items(folder, data.split)
    return CorpusLanguage(iso, str(folder), items, data.seed, data.resample, reader)


def recording_rows(lang, rows) -> object:
    """`lang` with its recordings numbered as a speech shard of `data.utterances: all` holds them: `sentences[r]`
    the r-th of `rows` ((key, file) pairs), so that extraction reads, batches and names one row per recording."""
    by_file = {(sid, r.file): r for sid, group in lang.recordings.items() for r in group}
    view = copy.copy(lang)
    try:
        view.__dict__["sentences"] = {r: by_file[int(sid), str(f)] for r, (sid, f) in enumerate(rows)}
    except KeyError as exc:
        raise DataError(f"{lang.where}: no recording {exc.args[0][1]} of key {exc.args[0][0]}, which the store's "
                        f"plan holds; the corpus changed since the store was made") from None
    return view


def resolve_format(data) -> str:
    """`data.format`, with `auto` decided from the files (and said once on stderr)."""
    if data.format != "auto":
        return data.format
    return _detect(str(data.root), data.split)


@functools.lru_cache(maxsize=8)
def _detect(root_text: str, split: str) -> str:
    root = Path(root_text)
    if root.is_file():
        fmt, why = "manifest", f"{root.name} is a file"
    elif not root.is_dir():
        raise DataError(f"{root}: data.root does not exist (data.format auto)")
    else:
        configs = [d for d in sorted(root.iterdir()) if d.is_dir()]
        fmt = why = None
        for d in configs:
            if (d / f"{split}.tsv").is_file():
                fmt, why = "fleurs", f"{d.name}/{split}.tsv"
            elif (d / "dataset_dict.json").is_file() or (d / "state.json").is_file():
                fmt, why = "hf_disk", f"{d.name}/{'dataset_dict.json' if (d / 'dataset_dict.json').is_file() else 'state.json'}"
            elif next(d.rglob("*.parquet"), None) is not None:
                fmt, why = "parquet", f"parquet files in {d.name}/"
            if fmt:
                break
        if fmt is None:
            raise DataError(f"{root}: data.format auto found no FLEURS TSV, save_to_disk folder or parquet file in "
                            f"its {len(configs)} folders; set data.format")
    print(f"crossrep: data.format auto: {fmt} ({why})", file=sys.stderr)
    return fmt


# ---------------------------------------------------------------- manifest

MANIFEST_COLUMNS = ("key", "lang", "text", "audio")


class Manifest:
    """A parsed manifest: rows per language, keys numbered, every cell checked once (errors name file, row and
    column; rows count from 1 after a CSV/TSV header, from 1 in JSONL and parquet)."""

    def __init__(self, path: Path, rows: list[dict]):
        self.path = path
        if not rows:
            raise DataError(f"{path}: no rows")
        missing = [c for c in MANIFEST_COLUMNS if c not in rows[0]]
        if missing:
            raise DataError(f"{path}: no column {', '.join(missing)} (have {', '.join(rows[0])}); a manifest "
                            f"needs {', '.join(MANIFEST_COLUMNS)} (optional speaker, split)")
        keys = [r["key"] for r in rows]
        numeric = all(_is_int(k) for k in keys)
        order = {k: i for i, k in enumerate(sorted({str(k) for k in keys}))} if not numeric else None
        self.by_lang: dict[str, list[tuple[str | None, Item]]] = {}
        for n, r in enumerate(rows, 1):
            where = f"{path}:row {n}"
            for column in ("key", "lang", "text"):
                if r.get(column) is None or str(r[column]).strip() == "":
                    raise DataError(f"{where}: column {column}: empty")
            try:
                iso = langs.resolve(str(r["lang"]).strip())
            except Exception as exc:
                raise DataError(f"{where}: column lang: {exc}") from None
            audio = r.get("audio")
            if isinstance(audio, dict):  # a parquet struct {bytes, path}
                audio = audio.get("bytes") or audio.get("path")
            if audio is None or (isinstance(audio, str) and not audio.strip()) or (
                    isinstance(audio, (bytes, bytearray)) and not audio):
                raise DataError(f"{where}: column audio: empty for key {r['key']} ({iso})")
            if isinstance(audio, str):
                audio = (path.parent / audio.strip()).resolve()
                name = str(audio)
            else:
                name = f"{where} (audio bytes)"
            key = int(r["key"]) if numeric else order[str(r["key"])]
            split = r.get("split")
            item = Item(key, name, str(r["text"]).strip(), audio, r.get("speaker"), cell=f"{where}: column audio")
            self.by_lang.setdefault(iso, []).append((None if split is None else str(split), item))

    def items(self, iso: str, split: str) -> list[Item]:
        rows = self.by_lang.get(iso)
        if not rows:
            raise DataError(f"{self.path}: no rows for {iso} (the manifest has {', '.join(sorted(self.by_lang))})")
        names = SPLIT_NAMES.get(split, (split,))
        kept = [item for s, item in rows if s is None or s in names]
        if not kept:
            raise DataError(f"{self.path}: no rows of split {split} for {iso}")
        for item in kept:
            if isinstance(item.audio, Path) and not item.audio.is_file():
                raise DataError(f"{item.audio}: missing audio file ({item.cell}, key {item.id}, {iso})")
        return kept


def _is_int(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    try:
        int(str(value))
        return True
    except ValueError:
        return False


@functools.lru_cache(maxsize=4)
def _manifest(path_text: str, mtime: float) -> Manifest:
    path = Path(path_text)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","))
    elif suffix == ".jsonl":
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise DataError(f"{path}:row {n}: not JSON ({exc})") from None
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        raise DataError(f"{path}: a manifest is a .csv, .tsv, .jsonl or .parquet file")
    return Manifest(path, rows)


def read_manifest(path: Path) -> Manifest:
    if not path.is_file():
        raise DataError(f"{path}: missing manifest (data.root with data.format manifest)")
    return _manifest(str(path), path.stat().st_mtime)


# ---------------------------------------------------------------- FLEURS from the hub


def split_files(folder: Path, split: str, suffix: str) -> list[Path]:
    """The files of a split in a config folder, in any of the parquet converter's namings."""
    names = SPLIT_NAMES.get(split, (split,))
    found = []
    for f in sorted(folder.rglob(f"*{suffix}")):
        rel = f.relative_to(folder)
        stem = rel.parts[-1][:-len(suffix)]
        words = set(stem.replace("_", "-").split("-")) | set(rel.parts[:-1])
        if words & set(names):
            found.append(f)
    if not found:
        raise DataError(f"{folder}: no {suffix} file of split {split} (looked for {', '.join(names)} in the names)")
    return found


def _check_schema(schema, where: str) -> None:
    names = schema.names
    missing = [c for c in FLEURS_COLUMNS if c not in names]
    if missing:
        raise DataError(f"{where}: its schema lacks {', '.join(missing)} (have {', '.join(names)}); FLEURS "
                        f"exports have id, transcription and an audio struct with bytes and path")


def parquet_items(folder: Path, split: str):
    """A config's items from the parquet export, audio left in the files, and the reader that decodes them a
    row group at a time."""
    import pyarrow.parquet as pq

    items = []
    for file in split_files(folder, split, ".parquet"):
        pf = pq.ParquetFile(file)
        _check_schema(pf.schema_arrow, str(file))
        offset = 0
        for g in range(pf.num_row_groups):
            meta = pf.read_row_group(g, columns=["id", "transcription", "audio.path"]  # not the bytes
                                     + (["num_samples"] if "num_samples" in pf.schema_arrow.names else []))
            items += _items(meta, file, g, offset)
            offset += meta.num_rows

    def read(wanted: list[Item]) -> list[bytes]:
        out = {}
        by_group: dict = {}
        for it in wanted:
            by_group.setdefault(it.audio[:2], []).append(it)
        for (file, g), group in by_group.items():
            column = pq.ParquetFile(file).read_row_group(g, columns=["audio"]).column("audio")
            for it in group:
                out[it.audio] = _bytes(column[it.audio[2]].as_py(), it.file)
        return [out[it.audio] for it in wanted]

    return items, read


def arrow_items(folder: Path, split: str):
    """A config's items from a `save_to_disk` folder (a DatasetDict's split folder, or one split)."""
    import pyarrow as pa

    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text())["splits"]
        name = next((s for s in SPLIT_NAMES.get(split, (split,)) if s in splits), None)
        if name is None:
            raise DataError(f"{folder}/dataset_dict.json: no split {split} (have {', '.join(splits)})")
        folder = folder / name
    state = folder / "state.json"
    if not state.is_file():
        raise DataError(f"{folder}: not a save_to_disk folder (no state.json or dataset_dict.json)")
    files = [folder / f["filename"] for f in json.loads(state.read_text())["_data_files"]]
    items = []
    tables = {}
    for file in files:
        table = pa.ipc.open_stream(pa.memory_map(str(file))).read_all()
        _check_schema(table.schema, str(file))
        tables[file] = table
        items += _items(table, file, 0, 0)

    def read(wanted: list[Item]) -> list[bytes]:
        return [_bytes(tables[it.audio[0]].column("audio")[it.audio[2]].as_py(), it.file) for it in wanted]

    return items, read


def _items(meta, file: Path, group: int, offset: int) -> list[Item]:
    """Items of a table with id, transcription, audio (a struct whose `path` names the clip) and optionally
    num_samples; `group`, `offset`: its row group in `file` and the rows before it."""
    cols = {n: meta.column(n).to_pylist() for n in ("id", "transcription") + (
        ("num_samples",) if "num_samples" in meta.schema.names else ())}
    cols["path"] = meta.column("audio").combine_chunks().field("path").to_pylist()
    out = []
    for r, (sid, text, name) in enumerate(zip(cols["id"], cols["transcription"], cols["path"])):
        where = f"{file}:row {offset + r + 1}"
        if sid is None or text is None or not str(text).strip():
            raise DataError(f"{where}: column {'id' if sid is None else 'transcription'}: empty")
        base = str(name).rsplit("/", 1)[-1] if name else where
        n = cols.get("num_samples", [0] * len(cols["id"]))[r] or 0
        out.append(Item(int(sid), base, str(text).strip(), (file, group, r), None, int(n)))
    return out


def _bytes(cell, where: str) -> bytes:
    data = cell.get("bytes") if isinstance(cell, dict) else None
    if not data:
        raise DataError(f"{where}: column audio: no embedded bytes")
    return data
