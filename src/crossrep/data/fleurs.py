"""A local FLEURS copy in the official layout, and the study's sentence selection.

Layout: `<root>/<config>/<split>.tsv` (7 tab-separated columns, no header; the older release has 8, with a
speaker id before the gender) and audio under `<root>/<config>/audio/<split>/`, `<root>/<config>/<split>/` or
packed in `<root>/<config>/audio/<split>.tar.gz`. Several utterances (speakers) share one sentence id; one per id
is kept, chosen with a fixed seed. The text of a sentence is that utterance's normalized transcription.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .. import languages as langs
from ..errors import DataError
from .audio import AudioSource


@dataclass(frozen=True)
class Utterance:
    id: int
    file: str
    raw: str
    text: str  # normalized transcription
    n_samples: int
    gender: str
    speaker: str | None


def read_tsv(path: Path) -> list[Utterance]:
    """Parse one FLEURS TSV; every row must be well formed (errors give the line number)."""
    if not path.is_file():
        raise DataError(f"{path}: missing FLEURS TSV")
    rows = []
    for lineno, raw_line in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            line = raw_line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not UTF-8 (byte {raw_line[exc.start:exc.start + 1]!r} at column "
                            f"{exc.start + 1}); FLEURS TSVs are UTF-8") from None
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) not in (7, 8):
            raise DataError(f"{path}:{lineno}: expected 7 (or 8) tab-separated columns, found {len(cols)}")
        try:
            sid, n_samples = int(cols[0]), int(cols[5])
        except ValueError:
            raise DataError(f"{path}:{lineno}: sentence id {cols[0]!r} and sample count {cols[5]!r} "
                            f"must be integers") from None
        if not cols[3].strip():
            raise DataError(f"{path}:{lineno}: empty normalized transcription (sentence id {sid})")
        if not cols[1].strip():
            raise DataError(f"{path}:{lineno}: empty audio file name (sentence id {sid})")
        rows.append(Utterance(sid, cols[1].strip(), cols[2], cols[3].strip(), n_samples, cols[-1],
                              cols[6] if len(cols) == 8 else None))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def recordings(rows, iso: str, seed: int) -> dict:
    """Every row per sentence id (ascending ids), the kept one first: the rows of an id sorted by file name, one
    drawn with a generator seeded by `seed` and the language (so the choice depends on nothing else and is the
    same in every format), then the others in file-name order."""
    by_id: dict = {}
    for row in rows:
        by_id.setdefault(row.id, []).append(row)
    rng = np.random.default_rng([seed, zlib.crc32(iso.encode())])
    out = {}
    for sid in sorted(by_id):
        group = sorted(by_id[sid], key=lambda r: r.file)
        k = int(rng.integers(len(group)))
        out[sid] = [group[k]] + group[:k] + group[k + 1:]
    return out


class FleursLanguage:
    """One language of one split: its TSV, one utterance per sentence id, and its audio."""

    def __init__(self, root: Path, iso: str, split: str, seed: int, resample: bool = False):
        self.lang = langs.get(iso)
        self.dir = root / self.lang.fleurs
        self.where = str(self.dir)
        self.split, self.seed, self.resample = split, seed, resample
        self.tsv = self.dir / f"{split}.tsv"
        if not self.dir.is_dir():
            raise DataError(f"{self.dir}: missing folder for {iso} (FLEURS config {self.lang.fleurs})")

    @cached_property
    def recordings(self) -> dict[int, list[Utterance]]:
        """Every utterance per sentence id, the kept one first (`recordings`)."""
        return recordings(read_tsv(self.tsv), self.lang.iso, self.seed)

    @cached_property
    def sentences(self) -> dict[int, Utterance]:
        """One utterance per sentence id, ascending ids; the choice depends only on seed and language."""
        return {sid: group[0] for sid, group in self.recordings.items()}

    def texts(self, ids: list[int]) -> list[str]:
        return [self.sentences[i].text for i in ids]

    @cached_property
    def source(self) -> AudioSource:
        return AudioSource(self.dir, self.split, self.resample)

    def audio(self, ids: list[int]) -> list[np.ndarray]:
        files = [self.sentences[i].file for i in ids]
        decoded = self.source.read(files)
        return [decoded[f] for f in files]

    def audio_refs(self, rows: list[Utterance]) -> list[tuple[Path, str]] | None:
        """Each row's audio file and how errors name it, for planning's header check; None for a packed archive
        (read whole when extracted, and checked then)."""
        if self.source.folder is None:
            return None
        return [(self.source.folder / r.file, f"{self.source.folder / r.file} (sentence id {r.id} in {self.tsv})")
                for r in rows]

    def clips(self, ids: list[int]) -> list[Clip]:
        """Clips to decode later (where they are featurized), with their TSV sample counts for batching."""
        return [Clip(self.sentences[i].file, self.sentences[i].n_samples) for i in ids]


@dataclass(frozen=True)
class Clip:
    """A clip of a language's audio folder, decoded where it is featurized; `n_samples` from the TSV."""

    file: str
    n_samples: int

    def __len__(self) -> int:
        return self.n_samples


@dataclass(frozen=True)
class Selection:
    """Which sentence ids a model's shards hold, and which each comparison uses."""

    crossmodal: dict[str, tuple[int, ...]]  # language -> its first N ids
    crosslingual: tuple[int, ...]  # the first M ids shared by all the model's languages

    def shard_ids(self, iso: str) -> tuple[int, ...]:
        """Ids stored for a language: both sets, ascending."""
        return tuple(sorted(set(self.crossmodal[iso]) | set(self.crosslingual)))


def select(corpus: dict, languages: tuple[str, ...], n: int, m: int, model: str) -> Selection:
    """The study's selection: first N ids per language; first M ids common to all `languages`."""
    crossmodal = {}
    for iso in languages:
        ids = sorted(corpus[iso].sentences)
        if len(ids) < n:
            raise DataError(f"{corpus[iso].tsv}: {iso} has {len(ids)} distinct sentence ids, fewer than "
                            f"data.crossmodal_sentences = {n}")
        crossmodal[iso] = tuple(ids[:n])
    shared = set.intersection(*(set(corpus[iso].sentences) for iso in languages))
    if len(shared) < m:
        fewest = sorted(languages, key=lambda iso: len(corpus[iso].sentences))[:3]
        raise DataError(
            f"model {model}: its {len(languages)} languages share {len(shared)} sentence ids, fewer than "
            f"crosslingual_sentences = {m} (fewest ids: "
            + ", ".join(f"{iso} {len(corpus[iso].sentences)}" for iso in fewest) + ")"
        )
    return Selection(crossmodal, tuple(sorted(shared)[:m]))
