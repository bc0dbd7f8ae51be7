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
from contextlib import ExitStack

import numpy as np
import torch
from tqdm import tqdm

from .config import Job, load_job
from .data.audio import SAMPLE_RATE
from .data.fleurs import FleursLanguage
from .errors import CrossrepError, ModelError, describe
from .lock import shard_lock
from .models import adapter_class
from .plan import open_checked, shards as all_shards, units, write_resolved
from .store import ActivationStore, ShardKey, chunk_rows

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

    def adapter(self, model: str):
        if self._model is None or self._model[0] != model:
            self._model = None
            gc.collect()
            plan = self.store.model(model)
            cls = adapter_class(plan.adapter)
            self._model = (model, cls(plan.checkpoint, plan.options, device=self.job.extract.device,
                                      dtype=self.job.extract.dtype))
        return self._model[1]

    def run(self, *shards: ShardKey) -> None:
        """Extract the missing chunks of `shards`: one shard, or the text and speech shard of one language of a
        joint model, computed together (one forward pass per batch, each shard written only what it lacks)."""
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
        n_chunks = states[first.modality].n_chunks
        done = {m: set(states[m].chunks_done) for m in keys}
        todo = [c for c in range(n_chunks) if any(c not in done[m] for m in keys)]
        lang = FleursLanguage(self.job.data.root, first.lang, self.job.data.split, self.job.data.seed)
        rows_todo = [r for c in todo for r in range(len(ids))[chunk_rows(len(ids), size, c)]]
        wanted = [ids[r] for r in rows_todo]
        adapter = self.adapter(first.model)
        inputs = {}
        if adapter.joint_inputs or "speech" in keys:
            audio = lang.audio(wanted)
            self.check_lengths(adapter, lang, wanted, audio)
        if adapter.joint_inputs:
            inputs = dict(zip(wanted, zip(audio, lang.texts(wanted))))
        elif "text" in keys:
            inputs = dict(zip(wanted, lang.texts(wanted)))
        else:
            inputs = dict(zip(wanted, audio))
        label = first.key if len(keys) == 1 else f"{first.model}/{'+'.join(keys)}/{first.lang}"
        bar = tqdm(total=len(ids), initial=len(ids) - len(rows_todo), desc=label, unit="sent",
                   disable=not self.progress, file=sys.stderr, mininterval=1.0)
        for c in todo:
            chunk_ids = ids[chunk_rows(len(ids), size, c)]
            need = {m: points[m] for m in keys if c not in done[m]}
            values = self.chunk(adapter, keys, need, [inputs[i] for i in chunk_ids], chunk_ids, bar)
            for m in need:
                self.store.write_chunk(keys[m], c, values[m])
        bar.close()
        for key in keys.values():
            self.store.mark(key, complete=True)

    def check_lengths(self, adapter, lang: FleursLanguage, ids: list[int], audio: list[np.ndarray]) -> None:
        """Refuse clips longer than the model takes, naming the file (a model would cut them silently)."""
        if adapter.max_seconds is None:
            return
        for sid, wave in zip(ids, audio):
            if len(wave) > adapter.max_seconds * SAMPLE_RATE:
                raise ModelError(f"{lang.dir}: clip {lang.sentences[sid].file} (sentence id {sid}) is "
                                 f"{len(wave) / SAMPLE_RATE:.1f} s, longer than the {adapter.max_seconds:g} s "
                                 f"{type(adapter).__name__} takes; leave the sentence's language out or cut the clip")

    def chunk(self, adapter, shards: dict[str, ShardKey], points: dict[str, tuple[str, ...]], inputs: list,
              ids: list[int], bar) -> dict[str, dict]:
        """{modality: {point: pooled rows in the chunk's id order}}; batches are length-sorted, and a joint
        adapter computes all modalities of a batch in one forward pass."""
        order = sorted(range(len(inputs)), key=lambda k: (_length(inputs[k]), k))
        lang = next(iter(shards.values())).lang
        out: dict[str, dict[str, np.ndarray]] = {m: {} for m in points}
        size = self.job.extract.batch_size
        for start in range(0, len(order), size):
            rows = order[start:start + size]
            batch = [inputs[k] for k in rows]
            if adapter.joint_inputs:
                pooled = adapter.embed_joint(lang, batch, points)
            else:
                pooled = {m: adapter.embed(m, lang, batch, p) for m, p in points.items()}
            for m, names in points.items():
                for p in names:
                    values = pooled[m][p]
                    bad = ~np.isfinite(values).all(axis=1)
                    if bad.any():
                        sid = ids[rows[int(np.argmax(bad))]]
                        raise ModelError(f"{shards[m].key}: NaN or infinite activation at point {p!r} for "
                                         f"sentence id {sid} (extract.dtype={self.job.extract.dtype})")
                    if p not in out[m]:
                        out[m][p] = np.empty((len(inputs), values.shape[1]), dtype=np.float32)
                    out[m][p][rows] = values.astype(np.float32)
            bar.update(len(rows))
        return out


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


class ExtractTask:
    """A Slurm array element: its shards, split over the tasks of a packed allocation (one per GPU).

    On preemption or time limit submitit calls `checkpoint`, which requeues the same call; the shards then
    resume from their last complete chunk.
    """

    def __call__(self, job_file: str, indices: list[int]) -> dict:
        import submitit

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # whole units per task: a joint unit's two shards stay with one writer
            mine = units(load_job(job_file), indices)[env.local_rank::env.num_tasks]
            indices = [i for unit in mine for i in unit]
            if torch.cuda.device_count() > 1:
                torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
        return run_task(job_file, indices)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)
