"""The Python API: `crossrep.open(out)` for a run's results in a notebook, `crossrep.compare(x, y)` for two
arrays. Both read and compute through the same modules as the CLI, so their numbers are the pipeline's."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import measures, stats
from .config import Job, load_job
from .errors import StoreError
from .measures import Measure


class Results:
    """A run folder's results, read lazily: activations, similarity Datasets, findings, shard states."""

    def __init__(self, job: Job):
        self.job = job
        self._store = None

    def __repr__(self) -> str:
        return f"crossrep.Results({str(self.job.out)!r}: job {self.job.name!r}, models " \
               f"{', '.join(m.name for m in self.job.models)})"

    @property
    def out(self) -> Path:
        return self.job.out

    @property
    def store(self):
        """The activation store (crossrep.store.ActivationStore), opened on first use."""
        if self._store is None:
            from .store import ActivationStore

            self._store = ActivationStore(self.job.out)
        return self._store

    def activations(self, model: str, modality: str, lang: str, point: str, sentences: str | None = None,
                    xarray: bool = False):
        """A shard point's pooled activations, (sentences x features) float32, rows in ascending sentence id.
        `sentences`: None (every row the shard holds: with `data.utterances: all`, a speech shard's every
        recording, its key repeated), "crossmodal" (the language's first N ids, as the cross-modal family compares
        them) or "crosslingual" (the M ids shared by the model's languages), each id's kept recording.
        `xarray=True`: a lazily read DataArray with the sentence ids as its `sentence` coordinate."""
        from .store import ShardKey, id_rows

        key = ShardKey(model, modality, lang)
        plan = self.store.model(model)
        if lang not in plan.languages:
            raise StoreError(f"{self.store.path}: model {model!r} has no language {lang!r} (have "
                             f"{', '.join(plan.languages)})")
        plan.point(modality, point)  # names the points the model has where `point` is not one
        ids = {None: None, "crossmodal": plan.crossmodal_ids.get(lang), "crosslingual": plan.crosslingual_ids}
        if sentences not in ids:
            raise ValueError(f"sentences: expected None, 'crossmodal' or 'crosslingual', got {sentences!r}")
        if not xarray:
            return self.store.read(key, point, ids[sentences])
        import xarray as xr

        arr = xr.open_zarr(self.store.path, group=str(key), consolidated=False, zarr_format=3)[point]
        if ids[sentences] is None:
            return arr
        return arr.isel(sentence=id_rows(self.store.ids(key), ids[sentences], f"{self.store.path}/{key}"))

    def similarity(self, model: str):
        """The model's similarity Dataset (xarray, lazily from similarity.zarr; see crossrep.results)."""
        from . import results

        return results.open_model(self.job.out, model, load=False)

    def lens(self, model: str):
        """The logit lens of an audio LLM at its audio positions (xarray Dataset: lang x sentence x point, the
        sentence ids a coordinate; see crossrep.lensdata), when the job listed it under `analysis.lens`."""
        from . import lensdata

        return lensdata.dataset(self.store, model)

    def findings(self):
        """The findings' tests (pandas): one row per finding, model and measure, as in findings.csv."""
        import pandas as pd

        path = self.job.out / "findings.json"
        if not path.is_file():
            raise StoreError(f"{path}: not written yet (run the aggregate stage: crossrep aggregate {self.job.out})")
        return pd.DataFrame(json.loads(path.read_text())["results"])

    def status(self):
        """Each shard's state (pandas): index, model, modality, lang, status, chunks done of all, error."""
        import pandas as pd

        from .plan import shards
        from .store import FILENAME

        table = shards(self.job)
        exists = (self.job.out / FILENAME).exists()
        rows = []
        for i, key in enumerate(table):
            st = self.store.state(key) if exists else None
            rows.append({"shard": i, "model": key.model, "modality": key.modality, "lang": key.lang,
                         "status": st.status if st else "missing", "chunks_done": len(st.chunks_done) if st else 0,
                         "chunks": st.n_chunks if st else None, "error": st.error if st else None})
        return pd.DataFrame(rows)


def open(out_or_job: str | Path) -> Results:
    """A run's results: `out_or_job` is a run folder (its job.yaml), a job YAML or a bundled job's name."""
    return Results(load_job(out_or_job))


@dataclass(frozen=True)
class Comparison:
    """`compare`'s answer. `chance`: the permutation null's mean (the score with y's sentences shuffled);
    `adjusted`: (score - chance) / (1 - chance); `p_value`: add-one, one-sided (score above chance). `low`,
    `high`: the interval at `level` from the delete-a-group sentence jackknife (`se`, t with G - 1 degrees of
    freedom), as the findings' tests use it; `boot_low`, `boot_high`: the percentile interval of the sentence
    bootstrap, as similarity.csv reports it (a resample repeats sentences, which raises CCA-type scores: that
    interval can miss the score itself; None without bootstrap)."""

    measure: Measure
    score: float
    chance: float
    adjusted: float
    p_value: float
    se: float
    low: float
    high: float
    boot_low: float | None
    boot_high: float | None
    level: float
    null: np.ndarray
    jack: np.ndarray
    boot: np.ndarray


def compare(x, y, measure: str = "svcca", permutations: int = 100, bootstrap: int = 0, jackknife: int = 10,
            seed: int = 0, level: float = 0.95, **params) -> Comparison:
    """Compare two representations of the same sentences, rows aligned: `x` (n x d1) and `y` (n x d2), NumPy or
    CuPy. `measure`: a registered measure's name, `params` its parameters (e.g. knn=5 for mknn; defaults
    otherwise). The score is the one the reduction stores for the same two arrays; the null, the jackknife and
    the bootstrap resample sentences with the reduction's seeded schemes (crossrep.stats)."""
    m = measures.get(measure, **params)
    xp = measures.array_module(x)
    x, y = xp.asarray(x, dtype=xp.float64), xp.asarray(y, dtype=xp.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be (sentences x features) arrays with the same rows, got {x.shape} and "
                         f"{y.shape}")
    n = x.shape[0]
    if permutations < 2:
        raise ValueError(f"permutations: at least 2 (the null's mean and spread), got {permutations}")
    if bootstrap == 1 or bootstrap < 0:
        raise ValueError(f"bootstrap: 0 or at least 2 replicates, got {bootstrap}")
    if not 2 <= jackknife <= n // 2:
        raise ValueError(f"jackknife: between 2 and {n // 2} sentence groups (2 sentences a group), got {jackknife}")
    rx, ry = m.prepare(x), m.prepare(y)
    score = float(m.scores([rx], [ry], [(0, 0)])[0, 0])
    null = np.array([m.scores([rx], [m.permute(ry, stats.permutation(seed, "compare", n, k))], [(0, 0)])[0, 0]
                     for k in range(permutations)])
    jack = np.array([_score(m, x, y, xp.asarray(stats.jackknife_kept(seed, n, jackknife, g)))
                     for g in range(jackknife)])
    boot = np.array([_score(m, x, y, xp.asarray(stats.resample(seed, n, b))) for b in range(bootstrap)])
    test = stats.t_test(score, [stats.group_component(jack)])
    low, high = test.interval(1.0 - level)
    boot_low, boot_high = (float(v) for v in stats.interval(boot, level)) if bootstrap else (None, None)
    chance = float(null.mean())
    return Comparison(m, score, chance, (score - chance) / (1.0 - chance), float(stats.add_one_p(null, score)),
                      test.se, low, high, boot_low, boot_high, level, null, jack, boot)


def _score(m: Measure, x, y, rows) -> float:
    return m.score(x[rows], y[rows])
