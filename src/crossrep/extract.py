"""Extraction of shards: length-sorted batches, pooled per point, written chunk by chunk, resumable.

A shard's sentences are split into chunks of `extract.chunk_size` rows (ascending sentence id). A chunk is
computed in length-sorted batches, written, then recorded in `chunks_done`; a restarted shard skips recorded
chunks. Chunk contents and batch composition depend only on the job, so a resumed shard is byte-identical to an
uninterrupted one.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .config import Job, load_job
from .data.audio import SAMPLE_RATE
from .data.corpus import open_language, recording_rows
from .data.fleurs import Clip
from .errors import CrossrepError, ModelError, describe
from .lock import shard_lock
from .models import adapter_class
from .models.base import to_host
from .plan import open_checked, shards as all_shards, units, write_resolved
from .store import ActivationStore, ShardKey, chunk_rows
from .timing import StageClock

log = logging.getLogger(__name__)


class ShardFailures(CrossrepError):
    """Some shards of a task failed; each failure is recorded in its shard group's `error` attribute."""

    def __init__(self, failures: dict[str, str], total: int):
        self.failures = failures
        super().__init__(f"{len(failures)} of {total} shards failed:\n  "
                         + "\n  ".join(f"{k}: {v}" for k, v in failures.items()))


def shard_indices(job: Job, selection: list[str]) -> list[int]:
    """`--shard` values (an index or a MODEL/MODALITY/LANG key) as indices into the job's shard table."""
    table = all_shards(job)
    keys = {str(k): i for i, k in enumerate(table)}
    out = []
    for item in selection:
        item = str(item)
        if item.isdigit():
            if int(item) >= len(table):
                raise CrossrepError(f"--shard {item}: out of range 0..{len(table) - 1}")
            out.append(int(item))
        elif item in keys:
            out.append(keys[item])
        else:
            raise CrossrepError(f"--shard {item!r}: neither an index 0..{len(table) - 1} nor a shard of the job "
                                f"(e.g. {table[0]})")
    return out


def run_task(job_file: str, indices: list[int], progress: bool = True) -> dict:
    """Entry point of one extraction task (a submitit job or a Slurm array element): shards by index.

    Shards run in units (`plan.units`: an audio LLM's text and speech shard of a language together, in one
    forward pass per batch); each shard is written under its own lock. A failing unit records its error in each
    of its shards and the task goes on with the next; an interrupt (Ctrl-C, a cancelled task) stops at once and
    marks nothing failed."""
    job = load_job(job_file)
    torch.set_num_threads(job.extract.threads)
    table = all_shards(job)
    bad = [i for i in indices if not 0 <= i < len(table)]
    if bad:
        raise CrossrepError(f"{job_file}: shard index {bad[0]} out of range 0..{len(table) - 1}")
    store = open_checked(job, mode="r+")
    extractor = Extractor(job, store, progress)
    failures = {}
    interrupted = []

    def on_interrupt(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        for unit in units(job, indices):
            keys = [table[i] for i in unit]
            try:
                with ExitStack() as locks:
                    for key in keys:
                        locks.enter_context(shard_lock(job.out, key))
                    extractor.run(*keys)
            except Exception as exc:  # recorded per shard; the task still fails at the end
                if interrupted:
                    raise KeyboardInterrupt from None
                message = describe(exc, job.out)
                for i, key in zip(unit, keys):
                    if store.state(key).complete:  # the other shard of a unit may have been done already
                        continue
                    try:
                        store.mark(key, error=message)
                    except Exception:  # a full disk refuses the attribute write too: the message is still printed
                        pass
                    failures[str(key)] = message
                    print(f"crossrep: shard {i} {key} failed: {message}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, previous)
    if failures:
        raise ShardFailures(failures, len(indices))
    return {"shards": len(indices)}


class Extractor:
    """Runs shards of one job in one process, keeping the last model loaded."""

    def __init__(self, job: Job, store: ActivationStore, progress: bool = True):
        self.job, self.store, self.progress = job, store, progress
        self._model: tuple[str, object] | None = None
        self.names: dict[int, str] = {}  # row label -> how errors name it (a sentence id, or a recording of one)
        self.load_seconds = 0.0  # model loading not yet charged to a shard

    def adapter(self, model: str):
        if self._model is None or self._model[0] != model:
            self._model = None
            gc.collect()
            plan = self.store.model(model)
            cls = adapter_class(plan.adapter)
            start = time.perf_counter()
            self._model = (model, cls(plan.checkpoint, plan.options, device=self.job.extract.device,
                                      dtype=self.job.extract.dtype, features=self.job.extract.features))
            self.load_seconds += time.perf_counter() - start
        return self._model[1]

    def run(self, *shards: ShardKey) -> None:
        """Extract the missing chunks of `shards`: one shard, or the text and speech shard of one language of a
        joint model, computed together (one forward pass per batch, each shard written only what it lacks).

        Batches are featurized by `extract.feature_workers` DataLoader processes ahead of the forward pass;
        where the time went is recorded with each shard (`crossrep status --timing`)."""
        first = shards[0]
        states = {s.modality: self.store.state(s) for s in shards}
        keys = {s.modality: s for s in shards if not states[s.modality].complete}
        if not keys:
            return
        for modality, key in keys.items():
            if states[modality].error:
                self.store.mark(key, error=None)
        ids = [int(i) for i in self.store.ids(first)]
        for key in keys.values():
            if [int(i) for i in self.store.ids(key)] != ids:  # a joint unit needs one sentence list
                raise ModelError(f"{key}: its sentence ids differ from those of {first}; cannot extract them "
                                 f"in one pass")
        points = {m: self.store.points(k) for m, k in keys.items()}
        size = self.store.plan.chunk_size
        done = {m: set(states[m].chunks_done) for m in keys}
        todo = [c for c in range(states[first.modality].n_chunks) if any(c not in done[m] for m in keys)]
        adapter = self.adapter(first.model)
        started = time.perf_counter()
        clock = StageClock(getattr(adapter, "device", None))
        clock.add("load", self.load_seconds)
        self.load_seconds = 0.0
        lang = open_language(self.job.data, first.lang)
        plan = self.store.model(first.model)
        keys_of = ids
        self.names = {sid: f"sentence id {sid}" for sid in ids}
        if plan.recordings and first.modality == "speech":  # one row per recording: the rows are what is extracted
            rows = plan.recordings[first.lang]
            lang = recording_rows(lang, [(sid, f) for sid, f, _ in rows])
            ids = list(range(len(rows)))
            self.names = {r: f"sentence id {sid}, recording {f}" for r, (sid, f, _) in enumerate(rows)}
        with clock("audio"):
            inputs = self.inputs(adapter, lang, keys, [ids[r] for c in todo
                                                       for r in range(len(ids))[chunk_rows(len(ids), size, c)]])
        chunk_ids = {c: ids[chunk_rows(len(ids), size, c)] for c in todo}
        chunk_inputs = {c: [inputs[i] for i in chunk_ids[c]] for c in todo}
        batches = [(c, rows) for c in todo for rows in self.batches(chunk_inputs[c])]
        last = {c: k for k, (c, _) in enumerate(batches)}  # the batch that completes chunk c
        total = sum(len(rows) for _, rows in batches)
        bar = tqdm(total=len(ids), initial=len(ids) - total, unit="sent", disable=not self.progress, file=sys.stderr,
                   desc=first.key if len(keys) == 1 else f"{first.model}/{'+'.join(keys)}/{first.lang}",
                   mininterval=1.0)
        workers = min(self.job.extract.feature_workers, len(batches))
        loader = DataLoader(Featurized(adapter, lang, sorted(keys),
                                       [[chunk_inputs[c][r] for r in rows] for c, rows in batches]),
                            batch_size=None, num_workers=workers, pin_memory=clock.cuda, worker_init_fn=_worker_init,
                            multiprocessing_context="fork" if workers else None,
                            prefetch_factor=2 if workers else None)
        lens = (Lens.of(plan, type(adapter), ids, keys_of, lang.texts(ids), str(keys["speech"]))
                if plan.lens and "speech" in keys else None)
        unit = Unit(keys, points, done, batches, last, chunk_ids, lens)
        with ThreadPoolExecutor(1, thread_name_prefix="crossrep-write") as writer:  # chunks are written while
            writes = self.loop(adapter, clock, loader, workers, unit, writer, bar)   # the model runs on
        for w in writes:
            clock.add("write", w.result())  # raises a failed write
        bar.close()
        wall = time.perf_counter() - started
        lengths = [[_length(chunk_inputs[c][r]) for r in rows] for c, rows in batches]
        record = {"sentences": total, "batches": len(batches), "feature_workers": workers,
                  "features": "device" if self.job.extract.features == "device" and adapter.device_features else "cpu",
                  "device": str(getattr(adapter, "device", "cpu")), "unit": [str(k) for k in keys.values()],
                  "padding": padding_share(lengths)}
        for key in keys.values():  # a joint unit's time is split evenly between its shards
            self.store.record_timing(key, dict(record, wall=round(wall / len(keys), 4), seconds={
                k: round(v, 4) for k, v in clock.share(1 / len(keys)).items()}))
            self.store.mark(key, complete=True)

    def loop(self, adapter, clock: StageClock, loader, workers: int, unit: "Unit", writer, bar) -> list:
        """Forward passes over the featurized batches as they arrive; each completed chunk goes to the writer
        (the futures are returned; a failed write stops the loop at the next batch)."""
        keys, out, writes = unit.keys, {}, []
        lang = next(iter(keys.values())).lang
        waited = time.perf_counter()
        for k, (features, seconds, error) in enumerate(loader):
            if error is not None:
                raise error
            for stage, value in seconds.items():
                clock.add(stage, value)
            busy = 0.0 if workers else sum(seconds.values())  # without workers the loader ran in this process
            clock.add("wait", max(0.0, time.perf_counter() - waited - busy))
            for w in writes:
                if w.done() and w.exception() is not None:
                    raise w.exception()
            c, rows = unit.batches[k]
            need = {m: unit.points[m] for m in keys if c not in unit.done[m]}
            with clock("forward"):
                if adapter.joint_inputs:
                    lens = (unit.lens.request([unit.chunk_ids[c][r] for r in rows])
                            if unit.lens is not None and "speech" in need else None)
                    pooled = adapter.forward_joint(lang, features, need, lens)
                else:
                    pooled = {m: adapter.forward(m, lang, features, p) for m, p in need.items()}
            with clock("pool"):
                self.collect(out.setdefault(c, {m: {} for m in need}), pooled, keys, rows, len(unit.chunk_ids[c]),
                             [unit.chunk_ids[c][r] for r in rows])
            bar.update(len(rows))
            if unit.last[c] == k:
                writes.append(writer.submit(self.write, keys, c, out.pop(c)))
            waited = time.perf_counter()
        return writes

    def write(self, keys: dict, c: int, values: dict) -> float:
        start = time.perf_counter()
        for m, v in values.items():
            self.store.write_chunk(keys[m], c, v)
        return time.perf_counter() - start

    def inputs(self, adapter, lang, keys: dict, wanted: list[int]) -> dict:
        """Sentence id -> what the adapter takes: a text, a clip, or (clip, text) for joint adapters. Clips of an
        audio folder stay `Clip` references, decoded by the DataLoader workers; a packed archive is read here
        (one pass over it)."""
        if adapter.joint_inputs or "speech" in keys:
            if lang.source.folder is not None:
                audio = lang.clips(wanted)
            else:
                audio = lang.audio(wanted)
            self.check_lengths(adapter, lang, wanted, audio)
        if adapter.joint_inputs:
            return dict(zip(wanted, zip(audio, lang.texts(wanted))))
        if "text" in keys:
            return dict(zip(wanted, lang.texts(wanted)))
        return dict(zip(wanted, audio))

    def batches(self, inputs: list) -> list[list[int]]:
        """Row indices of a chunk's batches: length-sorted, at most `extract.batch_size` rows and, for clips
        with `extract.batch_seconds`, at most that many seconds of padded audio (rows x longest clip). Depends
        only on the lengths, so a job's batches, and so its results, are the same on every run."""
        order = sorted(range(len(inputs)), key=lambda k: (_length(inputs[k]), k))
        size, budget = self.job.extract.batch_size, self.job.extract.batch_seconds * SAMPLE_RATE
        audio = bool(inputs) and not isinstance(inputs[0], str)
        out, current = [], []
        for k in order:
            over = audio and budget > 0 and (len(current) + 1) * _length(inputs[k]) > budget
            if current and (len(current) == size or over):
                out.append(current)
                current = []
            current.append(k)
        if current:
            out.append(current)
        return out

    def collect(self, out: dict, pooled: dict, keys: dict, rows: list[int], n: int, sids: list[int]) -> None:
        """Pooled vectors of one batch into the chunk's arrays (host copy, float32), refusing NaN or infinity."""
        for m, values in pooled.items():
            host = to_host(values)
            for p, v in host.items():
                bad = ~np.isfinite(v).all(axis=1)
                if bad.any():
                    raise ModelError(f"{keys[m].key}: NaN or infinite activation at point {p!r} for "
                                     f"{self.names[sids[int(np.argmax(bad))]]} (extract.dtype="
                                     f"{self.job.extract.dtype}; or no valid position to pool over)")
                dtype = np.int32 if p.startswith("lenstop_") else np.float32  # token ids of the logit lens
                if p not in out[m]:
                    out[m][p] = np.empty((n, v.shape[1]), dtype=dtype)
                out[m][p][rows] = v.astype(dtype)

    def check_lengths(self, adapter, lang, ids: list[int], audio: list[np.ndarray]) -> None:
        """Refuse clips longer than the model takes, naming the file (a model would cut them silently)."""
        if adapter.max_seconds is None:
            return
        for sid, wave in zip(ids, audio):
            if len(wave) > adapter.max_seconds * SAMPLE_RATE:
                raise ModelError(f"{lang.where}: clip {lang.sentences[sid].file} ({self.names[sid]}) is "
                                 f"{len(wave) / SAMPLE_RATE:.1f} s, longer than the {adapter.max_seconds:g} s "
                                 f"{type(adapter).__name__} takes; leave the sentence's language out or cut the clip")


@dataclass(frozen=True)
class Unit:
    """What one run of a unit computes: its incomplete shards by modality, their points and chunks done, the
    batches (chunk, row indices), the batch completing each chunk, and each chunk's sentence ids."""

    keys: dict[str, ShardKey]
    points: dict[str, tuple[str, ...]]
    done: dict[str, set[int]]
    batches: list[tuple[int, list[int]]]
    last: dict[int, int]
    chunk_ids: dict[int, list[int]]
    lens: "Lens | None" = None


@dataclass(frozen=True)
class Lens:
    """The logit lens of a unit (`analysis.lens`): its points, k, and per row the transcript ids of the next
    sentence in the shard's stored order (wrapping; the next other key where a key has several recordings), the
    paired chance level: never the sentence itself."""

    points: tuple[str, ...]
    k: int
    partner: dict[int, tuple[int, ...]]

    def request(self, sids: list[int]):
        from .models.lens import LensRequest

        return LensRequest(self.points, self.k, tuple(self.partner[s] for s in sids))

    @classmethod
    def of(cls, plan, adapter_cls, rows: list[int], keys: list[int], texts: list[str], where: str) -> "Lens":
        """`rows` the unit's row labels, `keys` each row's sentence id, `texts` each row's transcript."""
        n = len(set(keys))
        if n < 2:
            raise ModelError(f"{where}: the logit lens pairs each sentence with another; this shard has {n}")
        tokens = adapter_cls.text_tokenizer(plan.checkpoint, plan.options)
        ids = [tuple(tokens(t)) for t in texts]
        partner = {}
        for r, row in enumerate(rows):
            nxt = next(q % len(rows) for q in range(r + 1, r + len(rows)) if keys[q % len(rows)] != keys[r])
            partner[row] = ids[nxt]
        return cls(plan.lens, plan.lens_k, partner)


class Featurized(Dataset):
    """The batches of a unit, featurized by the adapter (CPU work, no weights) in DataLoader workers: each item
    is (features, seconds it took, None) or (None, 0, the error), so that an error keeps its own message."""

    def __init__(self, adapter, lang, modalities: list[str], batches: list[list]):
        self.adapter, self.lang, self.modalities, self.batches = adapter, lang, modalities, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int):
        start = time.perf_counter()
        try:
            batch = self.decode(self.batches[k])
            decoded = time.perf_counter()
            iso = self.lang.lang.iso
            if self.adapter.joint_inputs:
                features = self.adapter.featurize_joint(iso, batch)
            else:  # a non-joint unit is one shard
                features = self.adapter.featurize(self.modalities[0], iso, batch)
        except CrossrepError as exc:  # raised again in the task, with its own type and message
            return None, {}, exc
        except Exception as exc:  # other types may not survive the trip between processes
            return None, {}, ModelError(f"{type(exc).__name__}: {exc}")
        return features, {"audio": decoded - start, "features": time.perf_counter() - decoded}, None

    def decode(self, batch: list) -> list:
        """The batch with its `Clip` references decoded (in the worker), each checked against the model's limit."""
        clips = [x[0] if isinstance(x, tuple) else x for x in batch]
        refs = [c.file for c in clips if isinstance(c, Clip)]
        if not refs:
            return batch
        audio = self.lang.source.read(refs)
        limit = self.adapter.max_seconds
        for name in refs:
            if limit is not None and len(audio[name]) > limit * SAMPLE_RATE:
                raise ModelError(f"{self.lang.where}: clip {name} is {len(audio[name]) / SAMPLE_RATE:.1f} s, longer "
                                 f"than the {limit:g} s {type(self.adapter).__name__} takes (its TSV says "
                                 f"{next(c.n_samples for c in clips if isinstance(c, Clip) and c.file == name)} "
                                 f"samples)")

        def one(x):
            if isinstance(x, tuple):
                return (one(x[0]), x[1])
            return audio[x.file] if isinstance(x, Clip) else x

        return [one(x) for x in batch]


def _worker_init(_worker: int) -> None:
    """A feature worker: one thread, and deaf to SIGTERM and SIGINT, which the task itself answers (submitit
    ignores SIGTERM until Slurm's KillWait ends; Ctrl-C stops the task, whose DataLoader then stops its workers).
    A worker killed by either would otherwise fail its shard with "DataLoader worker ... killed by signal"."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def padding_share(batches: list[list[int]]) -> float:
    """The share of padded positions in batches of these input lengths (each padded to its longest)."""
    padded = sum(len(b) * max(b) for b in batches)
    return round(1 - sum(map(sum, batches)) / padded, 4) if padded else 0.0


def _length(item) -> int:
    """Batching order: characters of a text, samples of a clip (of the clip, for joint inputs)."""
    return len(item[0]) if isinstance(item, tuple) else len(item)


def run_all(job: Job, indices: list[int] | None = None, progress: bool = True) -> dict:
    """Extract in this process (the `debug` path and `crossrep extract`)."""
    path = write_resolved(job)
    table = all_shards(job)
    if indices is None:
        store = ActivationStore(job.out)
        indices = [i for i, key in enumerate(table) if not store.state(key).complete]
    return run_task(str(path), indices, progress=progress)
