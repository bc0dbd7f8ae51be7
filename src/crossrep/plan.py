"""What a run computes: its shards, each shard's sentence ids and points, and the store hierarchy for them.

Planning reads only TSVs and model configs (no audio, no weights), so it runs on the submitting host before
any worker starts; workers then find everything they need in the store's attributes.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from .config import MODALITIES, Job
from .data.demo import MARKER, write_demo
from .data.fleurs import FleursLanguage, select
from .models import adapter_class
from .store import ActivationStore, Shard


def shards(job: Job) -> list[Shard]:
    """Every (model, modality, language) of the job, in a fixed order: the index is the array task id."""
    out = []
    for m in job.models:
        for modality in MODALITIES:
            for lang in m.languages:
                out.append(Shard(len(out), m.name, modality, lang))
    return out


def checkpoint_cache(job: Job) -> Path:
    return job.out / "checkpoints"


def corpus(job: Job, progress: bool = True) -> dict[str, FleursLanguage]:
    """The job's languages in its FLEURS copy; writes the demo data first when the job asks for it."""
    root = job.data.root
    if job.data.demo and (root / MARKER).is_file():
        have = set(json.loads((root / MARKER).read_text())["speech"])
        if not set(job.data.languages) <= have:  # crossrep's own demo data, for fewer languages: write it anew
            if progress:
                print(f"crossrep: {root} lacks {', '.join(sorted(set(job.data.languages) - have))}; "
                      f"rewriting the demo data", file=sys.stderr)
            shutil.rmtree(root)
    if job.data.demo and not (root / MARKER).is_file():
        write_demo(root, job.data.languages, split=job.data.split, progress=progress)
    return {iso: FleursLanguage(root, iso, job.data.split, job.data.seed) for iso in job.data.languages}


def fingerprint(job: Job) -> dict:
    """The job settings an existing store must share to be resumed."""
    d = job.to_dict()
    return {"data": {k: v for k, v in d["data"].items() if k != "demo"}, "models": d["models"],
            "chunk_size": job.extract.chunk_size, "dtype": job.extract.dtype}


def create_store(job: Job, progress: bool = True) -> ActivationStore:
    """Plan every model and create (or check) `<out>/activations.zarr`."""
    data = corpus(job, progress)
    models = []
    for m in job.models:
        cls = adapter_class(m.adapter)
        options = cls.check_options(m.options, f"{m.key}.options")
        checkpoint = cls.resolve(m.checkpoint, checkpoint_cache(job))
        spec = cls.spec(checkpoint, options)
        points = {}
        for modality in MODALITIES:
            for lang in m.languages:
                spec.check_language(m.name, lang, modality)
            points[modality] = spec.select(m.name, modality, m.points[modality])
        names = {mod: {p.name for p in pts} for mod, pts in points.items()}
        pairs = [list(pair) for pair in spec.pairs if pair[1] in names["text"] and pair[2] in names["speech"]]
        sel = select(data, m.languages, job.data.crossmodal_sentences, m.crosslingual_sentences, m.name)
        shard_ids = {lang: list(sel.shard_ids(lang)) for lang in m.languages}
        models.append({
            "name": m.name, "adapter": m.adapter, "checkpoint": checkpoint, "options": options,
            "languages": list(m.languages),
            "points": {mod: [{"name": p.name, "width": p.width, "depth": p.depth} for p in pts]
                       for mod, pts in points.items()},
            "pairs": pairs,
            "crossmodal_ids": {lang: list(ids) for lang, ids in sel.crossmodal.items()},
            "crosslingual_ids": list(sel.crosslingual),
            "shards": {mod: shard_ids for mod in MODALITIES},
        })
    return ActivationStore.create(job.out, fingerprint(job), models, job.extract.chunk_size)
