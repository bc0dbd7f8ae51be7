"""Test helpers: one small FLEURS-layout corpus (the demo data) rewritten as the hub's parquet export (pyarrow, in
the exported schema and several of the converter's file namings), as `save_to_disk` folders (the `datasets`
package) and as a manifest, so every reader can be compared with the raw layout."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from crossrep import languages as langs
from crossrep.data.fleurs import read_tsv

GENDER = {"MALE": 0, "FEMALE": 1, "OTHER": 2}


def rows(root: Path, iso: str, split: str = "test") -> list[dict]:
    """The exported columns of one config, audio bytes embedded, in TSV order."""
    config = langs.get(iso).fleurs
    folder = root / config
    audio = folder / "audio" / split if (folder / "audio" / split).is_dir() else folder / split
    out = []
    for u in read_tsv(folder / f"{split}.tsv"):
        out.append({"id": u.id, "num_samples": u.n_samples, "path": str(audio / u.file),
                    "audio": {"bytes": (audio / u.file).read_bytes(), "path": f"{split}/{u.file}"},
                    "transcription": u.text, "raw_transcription": u.raw, "gender": GENDER.get(u.gender, 2),
                    "lang_id": 0, "language": langs.get(iso).name, "lang_group_id": 0})
    return out


def schema():
    import pyarrow as pa

    return pa.schema([("id", pa.int32()), ("num_samples", pa.int32()), ("path", pa.string()),
                      ("audio", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                      ("transcription", pa.string()), ("raw_transcription", pa.string()), ("gender", pa.int64()),
                      ("lang_id", pa.int64()), ("language", pa.string()), ("lang_group_id", pa.int64())])


NAMINGS = (["test-00000-of-00001.parquet"], ["fleurs-test.parquet"], ["test/0000.parquet"],
           ["test-00000-of-00002.parquet", "test-00001-of-00002.parquet"])


def to_parquet(root: Path, out: Path, languages) -> Path:
    """Each language in another of the converter's namings; row groups of 5 rows (several per file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for k, iso in enumerate(languages):
        data = rows(root, iso)
        names = NAMINGS[k % len(NAMINGS)]
        parts = [data[i::len(names)] for i in range(len(names))]
        for name, part in zip(names, parts):
            path = out / langs.get(iso).fleurs / name
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(part, schema=schema()), path, row_group_size=5)
    return out


def to_hf_disk(root: Path, out: Path, languages) -> Path:
    """save_to_disk folders written by `datasets`: a DatasetDict (split `test`) for even languages, one split for
    odd ones."""
    import datasets

    features = datasets.Features({"id": datasets.Value("int32"), "num_samples": datasets.Value("int32"),
                                  "path": datasets.Value("string"),
                                  "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                                  "transcription": datasets.Value("string"),
                                  "raw_transcription": datasets.Value("string"), "gender": datasets.Value("int64"),
                                  "lang_id": datasets.Value("int64"), "language": datasets.Value("string"),
                                  "lang_group_id": datasets.Value("int64")})
    for k, iso in enumerate(languages):
        ds = datasets.Dataset.from_list(rows(root, iso), features=features)
        # the Audio feature as the hub's FLEURS has it (cast in Arrow: encoding examples would need torchcodec)
        ds = ds.cast_column("audio", datasets.Audio(sampling_rate=16_000, decode=False))
        target = out / langs.get(iso).fleurs
        (datasets.DatasetDict({"test": ds}) if k % 2 == 0 else ds).save_to_disk(str(target))
    return out


def to_manifest(root: Path, path: Path, languages, codes=None) -> Path:
    """A CSV manifest with audio paths relative to it; `codes` names each language another way (BCP-47, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["key", "lang", "text", "audio", "speaker", "split"])
        for iso in languages:
            for r in rows(root, iso):
                w.writerow([r["id"], (codes or {}).get(iso, iso), r["transcription"],
                            os.path.relpath(r["path"], path.parent), "", "test"])
    return path
