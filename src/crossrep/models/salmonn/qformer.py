"""SALMONN's window-level Q-Former on transformers' `Blip2QFormerModel`, and its official parameter names.

The official model is the LAVIS BERT Q-Former (`speech_Qformer.bert`, BERT-base settings, 2 layers, cross-attention
in every layer to the 2048-wide encoder features, LayerNorm eps 1e-12, exact GELU) with one learned query
(`speech_query_tokens`). Called with the query alone it applies the embedding LayerNorm, then per layer
self-attention over the query, cross-attention to the window, and the query feed-forward (`intermediate_query`,
`output_query`). `Blip2QFormerModel` with `cross_attention_frequency=1` and no text input computes the same thing.
The text-side tensors of the checkpoint (word and position embeddings, text feed-forward, `cls` head) are unused.

Sizes come from the checkpoint (query width, feed-forward width) and the encoders (cross-attention input width);
the layer count is the official constant 2 and the head count follows BERT's 64-wide heads (12 for width 768).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ...errors import ModelError

LAYERS = 2
HEAD_WIDTH = 64
PREFIX = "speech_Qformer.bert."
QUERY = "speech_query_tokens"
# Tensors of the official Q-Former that the query-only forward never reads.
UNUSED = (
    re.compile(r"speech_Qformer\.bert\.embeddings\.(word_embeddings|position_embeddings)\.weight"),
    re.compile(r"speech_Qformer\.bert\.embeddings\.position_ids"),
    re.compile(r"speech_Qformer\.bert\.encoder\.layer\.\d+\.(intermediate|output)\.(dense|LayerNorm)\.(weight|bias)"),
    re.compile(r"speech_Qformer\.cls\..*"),
)


def qformer_config(hidden: int, intermediate: int, encoder_width: int):
    from transformers import Blip2QFormerConfig

    if hidden % HEAD_WIDTH:
        raise ModelError(f"{QUERY} is {hidden} wide, not a multiple of the Q-Former head width {HEAD_WIDTH}")
    return Blip2QFormerConfig(
        hidden_size=hidden, num_hidden_layers=LAYERS, num_attention_heads=hidden // HEAD_WIDTH,
        intermediate_size=intermediate, hidden_act="gelu", hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1, layer_norm_eps=1e-12, cross_attention_frequency=1,
        encoder_hidden_size=encoder_width, use_qformer_text_input=False,
    )


class WindowQFormer(nn.Module):
    """One learned query per window cross-attends to the window's frames: (M, frames, width) -> (M, hidden)."""

    def __init__(self, hidden: int, intermediate: int, encoder_width: int):
        from transformers import Blip2QFormerModel

        super().__init__()
        self.query = nn.Parameter(torch.zeros(1, 1, hidden))
        self.bert = Blip2QFormerModel(qformer_config(hidden, intermediate, encoder_width))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        query = self.query.expand(windows.shape[0], -1, -1)
        return self.bert(query_embeds=query, encoder_hidden_states=windows).last_hidden_state[:, 0]


def official_name(name: str) -> str:
    """The official checkpoint's name of a `WindowQFormer` tensor."""
    if name == "query":
        return QUERY
    rest = name.removeprefix("bert.")
    if rest.startswith("layernorm."):
        return PREFIX + "embeddings.LayerNorm." + rest.removeprefix("layernorm.")
    rest = rest.replace(".crossattention.attention.", ".crossattention.self.")
    return PREFIX + rest.replace(".attention.attention.", ".attention.self.")


def sizes(shapes: dict[str, tuple]) -> tuple[int, int]:
    """Query width and feed-forward width read from the checkpoint's shapes (BERT-base if they are missing)."""
    hidden = shapes.get(QUERY, (1, 1, 768))[-1]
    intermediate = shapes.get(PREFIX + "encoder.layer.0.intermediate_query.dense.weight", (3072,))[0]
    return int(hidden), int(intermediate)
