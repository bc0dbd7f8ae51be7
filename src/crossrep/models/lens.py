"""The logit lens at the audio positions of an audio LLM: what the LLM "reads" there, layer by layer.

At a point (the decoder's input "in", a layer's raw output "1".."L", or "out", already normed), the model's final
norm and LM head turn each audio position's state into a distribution over the vocabulary (log-softmax over every
LM-head row, the rows past the tokenizer's size included). Per sentence it scores the transcript's distinct
token ids (as they stand at the transcript positions of the joint sequence):

- recall@k: the share of them in the top-k of at least one audio position, tie-inclusive (a token is in the top-k
  where fewer than k tokens have a strictly larger log-probability), for k = 1, 10 and the job's k;
- logprob: the mean over them of the best log-probability any audio position gives the id;
- the same for another sentence's transcript scored on this sentence's audio (the paired chance level);
- the 5 most probable ids of the lens applied to the mean audio state.

Positions are read in blocks, so a 150k vocabulary never needs more than a block x vocabulary matrix at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ModelError
from ..point import LENS_FIELDS as FIELDS
from ..point import LENS_TOP as TOP
BLOCK = 64  # audio positions per block of the vocabulary-wide computation


@dataclass(frozen=True)
class LensRequest:
    """What one batch's lens needs beyond its states: the points, the job's k and, per row, the other sentence's
    transcript ids (the paired chance level)."""

    points: tuple[str, ...]
    k: int
    partner: tuple[tuple[int, ...], ...]


def distribution(state: torch.Tensor, norm, head, normed: bool) -> torch.Tensor:
    """Log-probabilities (rows, vocabulary) in float32 of states (rows, width): final norm (unless `normed`), LM
    head, log-softmax over every row of the head."""
    x = state if normed else norm(state)
    return head(x).float().log_softmax(-1)


def scores(states: torch.Tensor, audio: torch.Tensor, norm, head, normed: bool, own: list[list[int]],
           partner: list[list[int]], k: int, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores (B, 8) float64 in FIELDS order, top (B, 5) long) of the states (B, N, H) at the `audio` positions
    (B, N bool) of each row, for its own transcript ids and its partner's."""
    out = torch.empty(len(own), len(FIELDS), dtype=torch.float64)
    top = torch.empty(len(own), TOP, dtype=torch.long)
    ks = (1, 10, k)
    for b in range(len(own)):
        h = states[b][audio[b]]
        if h.shape[0] == 0:
            raise ModelError("the logit lens found no audio position in a sequence")
        targets = [sorted(set(own[b])), sorted(set(partner[b]))]
        if not targets[0] or not targets[1]:
            raise ModelError("the logit lens needs a transcript of at least one token")
        ids = torch.tensor(sorted(set(targets[0]) | set(targets[1])), device=h.device)
        hit = torch.zeros(len(ks), len(ids), dtype=torch.bool, device=h.device)
        best = torch.full((len(ids),), -torch.inf, device=h.device)
        for start in range(0, h.shape[0], block):
            logp = distribution(h[start:start + block], norm, head, normed)
            vocab = logp.shape[-1]
            tops = logp.topk(min(max(ks), vocab), dim=-1).values  # descending
            at = logp[:, ids]
            for j, kk in enumerate(ks):
                # in the tie-inclusive top-k iff at least the k-th largest value (every id when k >= vocabulary)
                threshold = tops[:, kk - 1] if kk <= vocab else torch.full_like(tops[:, 0], -torch.inf)
                hit[j] |= (at >= threshold[:, None]).any(0)
            best = torch.maximum(best, at.max(0).values)
        row = []
        for target in targets:
            where = torch.searchsorted(ids, torch.tensor(target, device=h.device))
            row += [float(hit[j, where].double().mean()) for j in range(len(ks))] + [float(best[where].double().mean())]
        out[b] = torch.tensor(row, dtype=torch.float64)
        mean = distribution(h.mean(0, keepdim=True), norm, head, normed)[0]
        top[b] = mean.topk(min(TOP, mean.shape[0])).indices.cpu()
    return out, top
