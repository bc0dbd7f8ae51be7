"""`crossrep prefetch`: on a login node, put every hub model a job names into the local Hugging Face cache.

Compute nodes are offline: Slurm tasks run with HF_HUB_OFFLINE=1 and fail fast, naming the checkpoint, when a
model is not in the cache.
"""

from __future__ import annotations

from .config import Job
from .errors import ModelError
from .models import adapter_class
from .models.files import fetch, leaves
from .plan import checkpoint_cache


def prefetch(job: Job) -> list[str]:
    """Download what is missing; one line per file or repository saying what was done."""
    lines = []
    for m in job.models:
        checkpoint = adapter_class(m.adapter).resolve(m.checkpoint, checkpoint_cache(job))
        for ref in leaves(checkpoint):
            try:
                lines.append(f"{m.name}: {fetch(ref)}")
            except ModelError as exc:
                raise ModelError(f"{m.name}: {exc}") from None
    return lines
