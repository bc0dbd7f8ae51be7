"""`crossrep prefetch`: on a login node, put every hub model a job names into the local Hugging Face cache.

Compute nodes are offline: Slurm tasks run with HF_HUB_OFFLINE=1 and fail fast, naming the checkpoint, when a
model is not in the cache.
"""

from __future__ import annotations

from pathlib import Path

from .config import Job
from .errors import ModelError
from .models import adapter_class
from .plan import checkpoint_cache


def prefetch(job: Job) -> list[str]:
    """Download what is missing; one line per model saying what was done."""
    lines = []
    for m in job.models:
        checkpoint = adapter_class(m.adapter).resolve(m.checkpoint, checkpoint_cache(job))
        if Path(checkpoint).exists():
            lines.append(f"{m.name}: local checkpoint {checkpoint}, nothing to download")
            continue
        from huggingface_hub import snapshot_download

        try:
            path = snapshot_download(checkpoint)
        except Exception as exc:  # network, authentication or a wrong id: say which model
            raise ModelError(f"{m.name}: cannot download {checkpoint!r}: {exc}") from None
        lines.append(f"{m.name}: {checkpoint} cached at {path}")
    return lines
