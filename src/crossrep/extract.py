"""Extraction of shards: length-sorted batches, pooled per point, written chunk by chunk, resumable.

A shard's sentences are split into chunks of `extract.chunk_size` rows (ascending sentence id). A chunk is
computed in length-sorted batches, written, then recorded in `chunks_done`; a restarted shard skips recorded
chunks. Chunk contents and batch composition depend only on the job, so a resumed shard is byte-identical to an
uninterrupted one.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import traceback
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .config import Job, load_job
from .data.fleurs import FleursLanguage
from .errors import CrossrepError, ModelError
from .models import adapter_class
from .plan import shards as all_shards
from .store import ActivationStore, Shard, chunk_rows

log = logging.getLogger(__name__)


class ShardFailures(CrossrepError):
    """Some shards of a task failed; each failure is recorded in its shard group's `error` attribute."""


def run_task(job_file: str, indices: list[int], progress: bool = True) -> dict:
    """Entry point of one extraction task (a submitit job or a Slurm array element): shards by index."""
    job = load_job(job_file)
    torch.set_num_threads(job.extract.threads)
    table = all_shards(job)
    bad = [i for i in indices if not 0 <= i < len(table)]
    if bad:
        raise CrossrepError(f"{job_file}: shard index {bad[0]} out of range 0..{len(table) - 1}")
    store = ActivationStore(job.out, mode="r+")
    extractor = Extractor(job, store, progress)
    failures = {}
    for i in indices:
        shard = table[i]
        try:
            extractor.run(shard)
        except Exception as exc:  # recorded per shard; the task still fails at the end
            message = str(exc) if isinstance(exc, CrossrepError) else "".join(
                traceback.format_exception_only(type(exc), exc)).strip()
            store.mark(shard, error=message)
            failures[shard.key] = message
            print(f"crossrep: shard {i} {shard.key} failed: {message}", file=sys.stderr)
    if failures:
        raise ShardFailures(f"{len(failures)} of {len(indices)} shards failed: "
                            + "; ".join(f"{k}: {v}" for k, v in failures.items()))
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
            attrs = self.store.model_attrs(model)
            cfg = self.job.model(model)
            cls = adapter_class(cfg.adapter)
            self._model = (model, cls(attrs["checkpoint"], attrs["options"], device=self.job.extract.device,
                                      dtype=self.job.extract.dtype))
        return self._model[1]

    def run(self, shard: Shard) -> None:
        state = self.store.state(shard)
        if state.complete:
            return
        group = self.store.group(shard)
        attrs = dict(group.attrs)
        if attrs.get("error"):
            self.store.mark(shard, error=None)
        ids = [int(i) for i in group["sentence"][:]]
        points = tuple(attrs["points"])
        done = set(attrs["chunks_done"])
        todo = [c for c in range(attrs["n_chunks"]) if c not in done]
        lang = FleursLanguage(self.job.data.root, shard.lang, self.job.data.split, self.job.data.seed)
        rows_todo = [r for c in todo for r in range(len(ids))[chunk_rows(len(ids), attrs["chunk_size"], c)]]
        wanted = [ids[r] for r in rows_todo]
        adapter = self.adapter(shard.model)
        if adapter.joint_inputs:
            inputs = dict(zip(wanted, zip(lang.audio(wanted), lang.texts(wanted))))
        elif shard.modality == "text":
            inputs = dict(zip(wanted, lang.texts(wanted)))
        else:
            inputs = dict(zip(wanted, lang.audio(wanted)))
        bar = tqdm(total=len(ids), initial=len(ids) - len(rows_todo), desc=shard.key, unit="sent",
                   disable=not self.progress, file=sys.stderr, mininterval=1.0)
        for c in todo:
            chunk_ids = ids[chunk_rows(len(ids), attrs["chunk_size"], c)]
            values = self.chunk(adapter, shard, [inputs[i] for i in chunk_ids], chunk_ids, points, bar)
            self.store.write_chunk(shard, c, values)
        bar.close()
        self.store.mark(shard, complete=True)

    def chunk(self, adapter, shard: Shard, inputs: list, ids: list[int], points: tuple[str, ...], bar) -> dict:
        """Pooled vectors for one chunk, rows in the chunk's id order; batches are length-sorted."""
        order = sorted(range(len(inputs)), key=lambda k: (_length(inputs[k]), k))
        out: dict[str, np.ndarray] = {}
        size = self.job.extract.batch_size
        for start in range(0, len(order), size):
            rows = order[start:start + size]
            pooled = adapter.embed(shard.modality, shard.lang, [inputs[k] for k in rows], points)
            for p in points:
                values = pooled[p]
                bad = ~np.isfinite(values).all(axis=1)
                if bad.any():
                    sid = ids[rows[int(np.argmax(bad))]]
                    raise ModelError(f"{shard.key}: NaN or infinite activation at point {p!r} for sentence id "
                                     f"{sid} (extract.dtype={self.job.extract.dtype})")
                if p not in out:
                    out[p] = np.empty((len(inputs), values.shape[1]), dtype=np.float32)
                out[p][rows] = values.astype(np.float32)
            bar.update(len(rows))
        return out


def _length(item) -> int:
    """Batching order: characters of a text, samples of a clip (of the clip, for joint inputs)."""
    return len(item[0]) if isinstance(item, tuple) else len(item)


def run_all(job: Job, indices: list[int] | None = None, progress: bool = True) -> dict:
    """Extract in this process (the `debug` path and `crossrep extract`)."""
    path = write_resolved(job)
    table = all_shards(job)
    return run_task(str(path), list(range(len(table))) if indices is None else indices, progress=progress)


def write_resolved(job: Job) -> Path:
    """`<out>/job.yaml`: the job with every default and override applied, as workers read it."""
    import yaml

    job.out.mkdir(parents=True, exist_ok=True)
    path = job.out / "job.yaml"
    text = yaml.safe_dump(job.to_dict(), sort_keys=False, allow_unicode=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # array tasks may all get here at once
        tmp = path.with_name(f".job.yaml.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path


class ExtractTask:
    """A Slurm array element: its shards, split over the tasks of a packed allocation (one per GPU).

    On preemption or time limit submitit calls `checkpoint`, which requeues the same call; the shards then
    resume from their last complete chunk.
    """

    def __call__(self, job_file: str, indices: list[int]) -> dict:
        import submitit

        env = submitit.JobEnvironment()
        if env.num_tasks > 1:
            indices = indices[env.local_rank::env.num_tasks]
            if torch.cuda.device_count() > 1:
                torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
        return run_task(job_file, indices)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)
