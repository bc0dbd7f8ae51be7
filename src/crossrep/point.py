"""A point of a model: a place whose activations are pooled. Shared by the adapters (what a model offers) and
the store (what a shard holds); it imports nothing, so neither pulls in the other."""

from __future__ import annotations

from dataclasses import dataclass

# What a point is, so that analyses pick points by role rather than by name:
#   input    the input embeddings (word embeddings, audio features, an LLM's input embeddings)
#   layer    the output of one numbered layer
#   output   after the final normalisation of a stack
#   adaptor  after a length adaptation (SeamlessM4T's length adaptor, SONAR's pooling, SALMONN's Q-Former)
#   encoder  the output of a separate encoder feeding the model (SALMONN's Whisper + BEATs)
KINDS = ("input", "layer", "output", "adaptor", "encoder")


@dataclass(frozen=True)
class Point:
    """name (as in the job), width (features), depth (for plots), kind (one of KINDS)."""

    name: str
    width: int
    depth: float
    kind: str = "layer"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"point {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")


# what the logit lens records per sentence at a point (crossrep.models.lens computes it, crossrep.store keeps it)
LENS_FIELDS = ("recall_1", "recall_10", "recall_k", "logprob",
               "chance_recall_1", "chance_recall_10", "chance_recall_k", "chance_logprob")
LENS_TOP = 5  # most probable ids of the lens applied to the mean audio state
