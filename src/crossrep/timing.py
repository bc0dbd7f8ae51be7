"""Seconds per extraction stage, recorded with each shard: where a task's time goes and how busy the model is."""

from __future__ import annotations

import time
from contextlib import contextmanager

# load: the model; audio: reading and decoding clips; features: tokenising and feature extraction (in the
# DataLoader workers when there are any: overlapped with the forward pass); wait: the forward loop waiting for a
# featurized batch; forward: the model and pooling on its device; pool: the pooled vectors' host copy and
# checks; write: the store.
STAGES = ("load", "audio", "features", "wait", "forward", "pool", "write")


class StageClock:
    """Accumulates wall seconds per stage. On a GPU each timed stage ends with a synchronisation, so that
    queued kernels count in the stage that launched them."""

    def __init__(self, device=None):
        self.cuda = device is not None and device.type == "cuda"  # a torch.device
        self.seconds = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                import torch  # only where a GPU is in use: reading timing records needs no torch

                torch.cuda.synchronize()
            self.seconds[stage] += time.perf_counter() - start

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds

    def share(self, fraction: float) -> dict[str, float]:
        """This clock's seconds times `fraction` (a joint unit's time split between its two shards)."""
        return {k: v * fraction for k, v in self.seconds.items()}
