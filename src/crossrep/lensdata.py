"""The logit lens as an xarray Dataset, read from the activation store's speech shards (crossrep.store owns the
arrays `lens_<point>` and `lenstop_<point>`; crossrep.models.lens says what they hold).

Dimensions: lang, sentence (the union of the languages' stored sentence ids, the ids as the coordinate; a
language lacking an id holds NaN there), point (in model order, with its depth as `point_depth`), rank (the top
ids). Variables: one per field of LENS_FIELDS (recall_1, recall_10, recall_k, logprob and their chance_ pairs:
the same numbers for another sentence's transcript on this sentence's audio) and `top_ids` (-1 where missing).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .errors import StoreError
from .point import LENS_FIELDS, LENS_TOP
from .store import ActivationStore, ShardKey


def dataset(store: ActivationStore, model: str) -> xr.Dataset:
    plan = store.model(model)
    if not plan.lens:
        raise StoreError(f"{store.path}: model {model!r} has no logit lens (list it under analysis.lens.models "
                         f"and run the job into a new output folder)")
    ids = sorted({int(i) for lang in plan.languages for i in plan.shard_ids[lang]})
    where = {sid: r for r, sid in enumerate(ids)}
    shape = (len(plan.languages), len(ids), len(plan.lens))
    fields = np.full(shape + (len(LENS_FIELDS),), np.nan)
    top = np.full(shape + (LENS_TOP,), -1, dtype=np.int64)
    for a, lang in enumerate(plan.languages):
        key = ShardKey(model, "speech", lang)
        if not store.state(key).complete:
            raise StoreError(f"{store.path}: shard {key} is not complete; its logit lens is not all there (run "
                             f"`crossrep resume` first)")
        rows = [where[int(i)] for i in plan.shard_ids[lang]]
        for j, p in enumerate(plan.lens):
            fields[a, rows, j] = store.read(key, f"lens_{p}", plan.shard_ids[lang])  # the kept recordings
            top[a, rows, j] = store.read(key, f"lenstop_{p}", plan.shard_ids[lang])
    depth = {p.name: p.depth for p in plan.points["speech"]}
    coords = {"lang": list(plan.languages), "sentence": ids, "point": list(plan.lens),
              "point_depth": ("point", [depth[p] for p in plan.lens]), "rank": np.arange(1, LENS_TOP + 1)}
    data = {f: (("lang", "sentence", "point"), fields[..., i]) for i, f in enumerate(LENS_FIELDS)}
    data["top_ids"] = (("lang", "sentence", "point", "rank"), top)
    return xr.Dataset(data, coords=coords, attrs={"model": model, "k": plan.lens_k,
                                                  "text_input": plan.options.get("text_input", "joint")})
