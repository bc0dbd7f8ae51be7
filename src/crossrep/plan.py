"""What a run computes: its shards, each shard's sentence ids and points, and the store hierarchy for them.

Planning reads only TSVs and model configs (no audio, no weights), so it runs on the submitting host before
any worker starts; workers then find everything they need in the store's attributes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from . import languages as langs
from .config import MODALITIES, Job
from .data.demo import MARKER, write_demo
from .data.corpus import open_language, resolve_format
from .data.fleurs import select
from .errors import ConfigError, DataError, StoreError
from .models import adapter_class, family
from .store import FILENAME, ActivationStore, ModelPlan, ShardKey, StorePlan, differences, portable


def shards(job: Job) -> list[ShardKey]:
    """Every (model, modality, language) of the job, in a fixed order: a shard's position is its index in
    `crossrep extract --shard I` and in the Slurm arrays."""
    return [ShardKey(m.name, modality, lang) for m in job.models for modality in MODALITIES for lang in m.languages]


def units(job: Job, indices: list[int]) -> list[list[int]]:
    """`indices` grouped into units of work, in order of first appearance: the text and speech shard of one
    language of an audio LLM (a joint adapter) form one unit, run by one task in one forward pass per batch;
    every other shard is a unit of its own (and every shard with `data.utterances: all`, where speech has a row per
    recording and text one per key). Launchers distribute units, so each shard still has one writer."""
    table = shards(job)
    joint = {m.name for m in job.models if family(m.adapter, f"{m.key}.adapter").joint
             and job.data.utterances == "one"}
    out: list[list[int]] = []
    where: dict[tuple[str, str], list[int]] = {}
    for i in indices:
        key = table[i]
        if key.model in joint and (key.model, key.lang) in where:
            where[(key.model, key.lang)].append(i)
            continue
        unit = [i]
        out.append(unit)
        if key.model in joint:
            where[(key.model, key.lang)] = unit
    return out


def checkpoint_cache(job: Job) -> Path:
    """Where `checkpoint: tiny` models are built: inside `out`, so recorded relative to it (`store.portable`)."""
    return job.out / "checkpoints"


def corpus(job: Job, progress: bool = True) -> dict:
    """The job's languages in its corpus (crossrep.data.corpus); writes the demo data first when the job asks
    for it."""
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
    fmt = resolve_format(job.data)
    return {iso: open_language(job.data, iso, fmt) for iso in job.data.languages}


def corpus_summary(job: Job) -> list[str]:
    """What `crossrep plan` says of the corpus: its format, per language the keys it holds and its level, and
    how many keys all of the job's languages share."""
    data = corpus(job, progress=False)
    shared = set.intersection(*(set(lang.sentences) for lang in data.values()))
    lines = [f"# corpus {job.data.root} ({resolve_format(job.data)}, split {job.data.split}): {len(data)} "
             f"languages, {len(shared)} keys shared by all"]
    for iso, lang in data.items():
        extra = ""
        if job.data.utterances == "all":
            rec = [r for group in lang.recordings.values() for r in group]
            known = len({r.speaker for r in rec if r.speaker})
            extra = f"\t{len(rec)} recordings, " + (f"{known} speakers" if known else "speakers unknown")
        lines.append(f"#   {iso}\t{lang.lang.name}\t{langs.level(iso, job.data.levels)}\t{len(lang.sentences)} keys"
                     + extra)
    return lines


def fingerprint(job: Job) -> dict:
    """The job settings an existing store must share to be resumed: everything that changes the stored bytes.
    Not `out` itself, and paths inside it relative to it (`<out>/...`), so that a moved output folder resumes."""
    d = job.to_dict()
    # how many processes featurize or how many shards a task runs changes no byte; a budget of 0 (off) and CPU
    # features are how stores made before those keys existed were computed, so they stay resumable
    extract = {k: v for k, v in d["extract"].items() if k not in ("feature_workers", "shards_per_task")
               and not (k == "batch_seconds" and not v) and not (k == "features" and v == "cpu")}
    # every format reads the same items (the format is not in the bytes); resampling off and one utterance per
    # key are how stores made before those keys existed were read
    data = {k: v for k, v in d["data"].items() if k not in ("demo", "format", "levels")
            and not (k == "resample" and not v) and not (k == "utterances" and v == "one")}
    lens = {"lens": d["analysis"]["lens"]} if job.analysis.lens.models else {}  # computed with the activations
    return portable({"data": data, "models": d["models"],
                     "extract": extract, **lens}, job.out)


def store_plan(job: Job, progress: bool = True) -> StorePlan:
    """Plan every model: resolve checkpoints, check options and languages, select points and sentence ids."""
    data = corpus(job, progress)
    models = []
    for m in job.models:
        cls = adapter_class(m.adapter)
        options = cls.check_options(m.options, f"{m.key}.options")
        checkpoint = cls.resolve(m.checkpoint, checkpoint_cache(job))
        spec = cls.spec(checkpoint, options)
        options = spec.options if spec.options is not None else options
        points = {}
        for modality in MODALITIES:
            for lang in m.languages:
                spec.check_language(m.name, lang, modality)
            points[modality] = spec.select(m.name, modality, m.points[modality])
        names = {mod: {p.name for p in pts} for mod, pts in points.items()}
        pairs = tuple(tuple(pair) for pair in spec.pairs if pair[1] in names["text"] and pair[2] in names["speech"])
        sel = select(data, m.languages, job.data.crossmodal_sentences, m.crosslingual_sentences, m.name)
        lens = lens_points(job, m, cls, spec) if m.name in job.analysis.lens.models else ()
        models.append(ModelPlan(
            name=m.name, adapter=m.adapter, checkpoint=checkpoint, options=options, languages=tuple(m.languages),
            points=points, pairs=pairs,
            crossmodal_ids={lang: tuple(int(i) for i in ids) for lang, ids in sel.crossmodal.items()},
            crosslingual_ids=tuple(int(i) for i in sel.crosslingual),
            shard_ids={lang: tuple(int(i) for i in sel.shard_ids(lang)) for lang in m.languages},
            lens=lens, lens_k=job.analysis.lens.k if lens else 0,
            recordings={lang: shard_recordings(data[lang], sel.shard_ids(lang)) for lang in m.languages}
            if job.data.utterances == "all" else {},
        ))
    check_audio(job, data, models, progress)
    return StorePlan(job=fingerprint(job), chunk_size=job.extract.chunk_size, models=tuple(models))


def check_audio(job: Job, data: dict, models: list[ModelPlan], progress: bool = True) -> None:
    """Read the header of every clip the shards will extract (each key's kept recording, or every recording with
    `data.utterances: all`) before a store is made: an unreadable file, another rate or several channels
    (without `data.resample`) stop the plan with one line naming the file and where it is listed. Audio packed in
    a FLEURS archive, parquet or Arrow files is read whole only when extracted, and checked then."""
    from tqdm import tqdm

    from .data.audio import check_header

    todo = []
    for iso, lang in data.items():
        ids = sorted({i for m in models if iso in m.shard_ids for i in m.shard_ids[iso]})
        rows = ([r for i in ids for r in lang.recordings[i]] if job.data.utterances == "all"
                else [lang.sentences[i] for i in ids])
        refs = lang.audio_refs(rows) if rows else None
        todo += refs or []
    for audio, where in tqdm(todo, desc="checking audio headers", unit="clip", disable=not progress or not todo,
                             file=sys.stderr, mininterval=1.0):
        if isinstance(audio, Path) and not audio.is_file():
            raise DataError(f"{where}: missing audio file")
        check_header(audio, where, job.data.resample)


def shard_recordings(lang, ids) -> tuple[tuple[int, str, str], ...]:
    """A speech shard's rows with every recording: (key, recording, speaker or "") per recording of each id,
    the kept one first."""
    return tuple((int(sid), r.file, str(r.speaker or "")) for sid in ids for r in lang.recordings[sid])


def lens_points(job: Job, m, cls, spec) -> tuple[str, ...]:
    """The decoder points the logit lens reads for model `m` (`analysis.lens`), checked against what it offers."""
    key = "analysis.lens"
    if not getattr(cls, "offers_lens", False):
        raise ConfigError(f"{key}.models: {m.name} ({m.adapter}) has no LM head to read; the logit lens is for "
                          f"audio LLMs")
    offered = [p.name for p in spec.points["speech"] if p.kind != "encoder"]
    wanted = job.analysis.lens.points or tuple(offered)
    unknown = [p for p in wanted if p not in offered]
    if unknown:
        raise ConfigError(f"{key}.points: {m.name} has no decoder point {unknown[0]!r}; it offers {', '.join(offered)}")
    return tuple(wanted)


def create_store(job: Job, progress: bool = True) -> ActivationStore:
    """Plan every model and create (or check, and re-create missing groups of) `<out>/activations.zarr`."""
    return ActivationStore.create(job.out, store_plan(job, progress))


def open_checked(job: Job, mode: str = "r") -> ActivationStore:
    """The job's existing store, refused (naming each differing key) where the job does not describe it."""
    store = ActivationStore(job.out, mode=mode)
    diff = differences(store.plan.job, fingerprint(job))
    if diff:
        raise StoreError(f"{store.path}: the job does not describe this store; nothing was changed. It differs "
                         f"in:\n  " + "\n  ".join(diff))
    return store


def write_resolved(job: Job) -> Path:
    """`<out>/job.yaml`: the job with every default and override applied, as workers read it. Written only when
    the job describes the store already in `out` (if any), so a refused job leaves every file as it was."""
    import yaml

    if (job.out / FILENAME).exists():
        open_checked(job)
    job.out.mkdir(parents=True, exist_ok=True)
    path = job.out / "job.yaml"
    text = yaml.safe_dump(job.to_dict(), sort_keys=False, allow_unicode=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # array tasks may all get here at once
        tmp = path.with_name(f".job.yaml.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path
