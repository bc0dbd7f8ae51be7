"""The reduction: every comparison family of every measure as one Dask task graph, run on the job's scheduler.

The families (crossrep.families) say which representations are compared; each block of a family becomes tasks:
each shard point is read once, each representation prepared once per measure (and once per sentence-bootstrap
or jackknife resample), pairs scored in chunks. Beside each score: the random-vector baseline of the block's
sizes, a permutation null (the measure with one side's sentence order shuffled, `similarity.permutations`
times, from the prepared forms), `similarity.bootstrap` sentence-bootstrap replicates (one resample of
sentence positions per replicate, used on both sides of every pair of every family) and, for the families the
findings test, the `similarity.jackknife` delete-a-group replicates and the `similarity.speakers` redraws of
each key's recording (`data.utterances: all`). This module only computes: the numbers
come back as a `Reduced` per model, which crossrep.results names, stores and tabulates.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from . import families, measures, stats
from .config import Job
from .errors import StoreError
from .families import Layout
from .measures import Measure
from .plan import shards as all_shards
from .store import ActivationStore, ModelPlan, ShardKey, id_rows


def check_complete(job: Job, store: ActivationStore) -> None:
    """Refuse to reduce an incomplete store, naming every shard that is not complete."""
    table = all_shards(job)
    bad = [(i, st) for i, st in enumerate(store.state(s) for s in table) if st.status != "complete"]
    if bad:
        listed = ", ".join(f"{i}:{st.key} ({st.status})" for i, st in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise StoreError(f"{store.path}: {len(bad)} shards are not complete: {listed}{more}; "
                         f"run `crossrep status` and `crossrep extract` (or `resume`) first")


def array_backend(name: str):
    """numpy or cupy for `similarity.backend` (auto: cupy when it imports and sees a GPU)."""
    if name == "numpy":
        return np
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except Exception as exc:  # no cupy, no driver, no device
        if name == "cupy":
            raise StoreError(f"similarity.backend is cupy but CuPy cannot use a GPU here: {exc}") from None
    return np


def shard_point(source, model: str, modality: str, lang: str, point: str) -> tuple[np.ndarray, np.ndarray]:
    """One Dask task: a point of a shard as stored (its sentence ids and rows), read once for every measure,
    sentence set and resample that prepares it (a Zarr read costs milliseconds; the sentence jackknife alone
    prepares each representation G + 1 times per measure). `source`: the store's path (opened once per worker),
    or activations in memory with the store's `ids` and `read`."""
    store = _open(source) if isinstance(source, str) else source
    key = ShardKey(model, modality, lang)
    return store.ids(key), store.read(key, point)


def prepared(stored: tuple, sim: dict, measure: Measure, rep: list, ids: np.ndarray, resample: tuple | None):
    """One Dask task: a representation (the rows of `ids` of a stored shard point) prepared for a measure (for
    SVCCA its reduced basis), once for every pair it is in; `resample` ("boot", b): on the b-th sentence-bootstrap
    resample; ("jack", g): without the g-th sentence group of the delete-a-group jackknife; ("speakers", s): each key's
    recording in the s-th speaker redraw (`data.utterances: all`) instead of its kept one. BLAS runs one thread
    per task: Dask's workers are the parallelism, and the small products run faster unthreaded."""
    with one_thread():
        xp = array_backend(sim["backend"])
        model, modality, point, lang = rep
        stored_ids, data = stored
        rows = id_rows(stored_ids, ids, f"{model}/{modality}/{lang}")  # kept recordings; refuses ids not stored
        if resample is not None and resample[0] == "speakers":
            rows = stats.recording_rows(stored_ids, ids, sim["seed"], lang, resample[1])
            resample = None
        x = data[rows]
        if resample is not None:
            kind, k = resample
            x = x[stats.resample(sim["seed"], len(ids), k) if kind == "boot"
                  else stats.jackknife_kept(sim["seed"], len(ids), sim["jackknife"], k)]
        try:
            return measure.prepare(xp.asarray(x))
        except ValueError as exc:
            raise StoreError(f"{model}/{modality}/{lang} point {point}: {exc}") from None


@functools.lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    """The process's BLAS and OpenMP pools, found once: finding them reads /proc/self/maps (milliseconds), which
    per task cost more than the tasks' arithmetic."""
    return ThreadpoolController()


def one_thread():
    """A context in which BLAS runs on one thread."""
    return _controller().limit(limits=1)


@functools.lru_cache(maxsize=4)
def _open(out: str) -> ActivationStore:
    """The store, opened (and its plan parsed) once per worker process rather than once per task."""
    return ActivationStore(Path(out))


def scores(sim: dict, measure: Measure, name: str, reps_a: list, reps_b: list | None, pairs: np.ndarray,
           permutations: int) -> np.ndarray:
    """One Dask task: a measure for a chunk of pairs, and its permutation null: (1 + K, len(a), len(b)), NaN
    outside `pairs`; [0] the scores, [1 + k] each pair (i, j) with the b side's sentences in the k-th order of
    its own cell (`name` names the block), so that the chance level's estimation noise is independent across
    cells and averages out over the languages of a mean, instead of shifting every cell of a block alike."""
    m = measure
    reps_b = reps_a if reps_b is None else reps_b
    pairs = [(int(i), int(j)) for i, j in pairs]  # an array in the graph: Dask does not walk it tuple by tuple
    with one_thread():
        out = [m.scores(reps_a, reps_b, pairs)]
        n = m.sentences(reps_a[0])
        for k in range(permutations):
            null = np.full(out[0].shape, np.nan)
            for start in range(0, len(pairs), NULL_BATCH):
                part = pairs[start:start + NULL_BATCH]
                shuffled = [m.permute(reps_b[j], stats.permutation(sim["seed"], name, n, k, i, j))
                            for i, j in part]
                got = m.scores(reps_a, shuffled, [(i, c) for c, (i, _) in enumerate(part)])
                for c, (i, j) in enumerate(part):
                    null[i, j] = got[i, c]
            out.append(null)
    return np.stack(out)


NULL_BATCH = 32  # pairs whose shuffled copies are held at once (a Gram measure's copy is n^2 floats)


def assemble(parts: list[np.ndarray], within: bool, diagonal: bool) -> np.ndarray:
    """A block's (1 + K) or (B,) stack of matrices (or their diagonals) from its chunks' results; `within`: pairs
    within one list (the upper triangle, mirrored); `diagonal`: only (i, i), kept as a vector."""
    out = np.fmax.reduce(np.stack(parts), axis=0)
    if within:
        upper = np.triu_indices(out.shape[-1], 1)
        out[..., upper[1], upper[0]] = out[(...,) + upper]
    if diagonal:
        return np.diagonal(out, axis1=-2, axis2=-1).copy()
    return out


def baseline(sim: dict, measure: Measure, key: str, n: int, width_a: int, width_b: int) -> np.ndarray:
    seed = zlib.crc32(f"{sim['seed']}/{key}".encode())
    with one_thread():
        return measure.random_baseline(n, width_a, width_b, sim["baseline_repeats"], seed)


PAIRS_PER_TASK = 128  # a block's pairs are split into tasks of this size, for load balance


def _tag(resample: tuple | None) -> str:
    """A resampling as a key part (distributed takes only strings and numbers in keys)."""
    return "main" if resample is None else f"{resample[0]}{resample[1]}"


def _tasks(job: Job, lays: list[Layout], widths: dict, source) -> tuple[dict, dict]:
    """The Dask graph as a plain task dict, and the keys of its results per (measure, variable): per block the
    scores with their null, the bootstrap replicates and the baseline. Plain tasks, not `dask.delayed`: delayed
    calls hash and walk every argument and merge graphs call by call, which cost more than the arithmetic."""
    sim = ("similarity",)
    dsk: dict = {sim: {k: v for k, v in vars(job.similarity).items() if k != "measures"}}
    objects = dict(zip(job.similarity.measure_names, measures.resolve(job.similarity)))

    def reps(measure, block_reps, resample):
        if block_reps is None:
            return None
        keys = []
        for rep in block_reps:
            ids = np.array(rep.ids)
            redraw = resample
            if resample is not None and resample[0] == "speakers" and rep.modality == "text":
                redraw = None  # text has one row per key: a speaker redraw reuses its main form
            key = ("prepared", measure, rep.model, rep.modality, rep.point, rep.lang, len(ids),
                   zlib.crc32(ids.tobytes()), _tag(redraw))  # the same representation on other sentence ids
            if key not in dsk:
                stored = ("stored", rep.model, rep.modality, rep.lang, rep.point)
                if stored not in dsk:
                    dsk[stored] = (shard_point, source, rep.model, rep.modality, rep.lang, rep.point)
                dsk[key] = (prepared, stored, sim, objects[measure], [rep.model, rep.modality, rep.point, rep.lang], ids,
                            redraw)
            keys.append(key)
        return keys

    def block_tasks(measure, name, block, resample, permutations):
        a, b = reps(measure, block.a, resample), reps(measure, block.b, resample)
        parts = []
        for c in range(0, len(block.pairs), PAIRS_PER_TASK):
            key = ("scores", measure, name, _tag(resample), c)
            dsk[key] = (scores, sim, objects[measure], name, a, b, np.array(block.pairs[c:c + PAIRS_PER_TASK]), permutations)
            parts.append(key)
        key = ("block", measure, name, _tag(resample))
        dsk[key] = (assemble, parts, block.b is None, block.diagonal)
        return key

    graph = {}
    for me in job.similarity.measure_names:
        for lay in lays:
            entry = {"main": [block_tasks(me, f"{lay.name}/{i}", blk, None, job.similarity.permutations)
                              for i, blk in enumerate(lay.blocks)],
                     **{kind: [[block_tasks(me, f"{lay.name}/{i}", blk, (kind, k), 0) for k in range(count)]
                               for i, blk in enumerate(lay.blocks)]
                        for kind, count in _replicates(job, lay)}}
            if lay.baseline:
                entry["baseline"] = []
                for i, blk in enumerate(lay.blocks):
                    other = (blk.b or blk.a)[0]
                    key = ("baseline", me, lay.name, i)
                    dsk[key] = (baseline, sim, objects[me], f"{blk.a[0].model}/{lay.name}/{i}", blk.sentences,
                                widths[blk.a[0].model, blk.a[0].modality, blk.a[0].point],
                                widths[other.model, other.modality, other.point])
                    entry["baseline"].append(key)
            graph[me, lay.name] = entry
    return dsk, graph


def _replicates(job: Job, lay: Layout) -> tuple[tuple[str, int], ...]:
    """The replicate kinds of a layout and their counts: the sentence bootstrap for every family; the sentence
    jackknife and the speaker redraws for those the findings test."""
    sim = job.similarity
    return (("boot", sim.bootstrap), ("jack", sim.jackknife if lay.resampled else 0),
            ("speakers", sim.speakers if lay.resampled else 0))


@dataclass(frozen=True)
class Reduced:
    """One model's numbers, per layout (Dataset variable), before crossrep.results names and stores them. Each
    array of `arrays[layout]` has the measures first: `score` (measure, *dims), `null` (measure, *dims, K),
    and where computed `boot` (measure, B, *dims), `jack` (measure, G, *dims), `speakers` (measure, S, *dims),
    `baseline` (measure, blocks, repeat)."""

    plan: ModelPlan
    layouts: tuple[Layout, ...]
    arrays: dict[str, dict[str, np.ndarray]]


def model_arrays(job: Job, store, model: str) -> Reduced:
    """One model's similarity families for every measure of the job, computed as a Dask graph. `store`: the
    activation store, or activations in memory with its `model`, `ids` and `read` (the calibration bench runs
    this graph on simulated activations without writing a store per simulation)."""
    _open.cache_clear()  # a store opened by an earlier reduction in this process may have been remade since
    names = [m.name for m in job.models]
    plan = store.model(model)
    later = tuple(store.model(n) for n in names[names.index(model) + 1:])
    lays = families.layouts(job.similarity.families, families.Context(plan, later))
    widths = {(p.name, mod, pt.name): pt.width for p in (plan,) + later for mod, pts in p.points.items()
              for pt in pts}
    source = str(job.out) if isinstance(store, ActivationStore) else store
    results = compute(*_tasks(job, lays, widths, source), job, f"reduce {model}")
    names_ = job.similarity.measure_names
    arrays = {}
    for lay in lays:
        main = np.stack([np.stack([np.asarray(x) for x in results[me, lay.name]["main"]]) for me in names_])
        main = np.moveaxis(main, 2, 1)  # (measure, 1 + K, blocks, ...)
        out = {"score": main[:, 0], "null": np.moveaxis(main[:, 1:], 1, -1)}
        for kind, count in _replicates(job, lay):
            if count:
                reps = np.stack([np.stack([np.stack(blk)[:, 0] for blk in results[me, lay.name][kind]])
                                 for me in names_])  # (measure, blocks, count, ...)
                out[kind] = np.moveaxis(reps, 2, 1)
        if lay.baseline:
            out["baseline"] = np.stack([np.stack(results[me, lay.name]["baseline"]) for me in names_])
        arrays[lay.name] = out
    return Reduced(plan, tuple(lays), arrays)


def compute(dsk: dict, keys, job: Job, label: str = "reduce"):
    """Run a task graph on the scheduler the job names, with a progress bar labelled `label`: `keys` (nested
    lists and dicts of keys) with each key replaced by its result."""
    from .scheduler import scheduler

    leaves: list = []

    def collect(x):
        if isinstance(x, dict):
            for v in x.values():
                collect(v)
        elif isinstance(x, list):
            for v in x:
                collect(v)
        else:
            leaves.append(x)

    def fill(x, done):
        if isinstance(x, dict):
            return {k: fill(v, done) for k, v in x.items()}
        if isinstance(x, list):
            return [fill(v, done) for v in x]
        return done[x]

    collect(keys)
    with scheduler(job) as run:
        return fill(keys, dict(zip(leaves, run(dsk, leaves, label))))
