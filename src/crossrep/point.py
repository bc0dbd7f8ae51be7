"""A point of a model: a place whose activations are pooled. Shared by the adapters (what a model offers) and
the store (what a shard holds); it imports nothing, so neither pulls in the other."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    """name (as in the job), width (features), depth (for plots)."""

    name: str
    width: int
    depth: float
