"""Model adapters: one small interface per model family, looked up by the name a job gives.

The registry maps names to import paths so that reading a job never imports model code.
"""

from __future__ import annotations

import importlib

ADAPTERS = {
    "seamless_m4t_v2": "crossrep.models.seamless:SeamlessM4Tv2Adapter",
    "sonar": "crossrep.models.sonar:SonarAdapter",
    "salmonn": "crossrep.models.salmonn:SalmonnAdapter",
    "qwen2_audio": "crossrep.models.qwen2_audio:Qwen2AudioAdapter",
    "qwen2_5_omni": "crossrep.models.qwen2_5_omni:Qwen25OmniAdapter",
    "audioflamingo3": "crossrep.models.audioflamingo3:AudioFlamingo3Adapter",
    "hf_encoders": "crossrep.models.hf_encoders:HFEncodersAdapter",
}


# adapter -> one line for `crossrep --help` and error messages (points, what it reads)
SUMMARIES = {
    "seamless_m4t_v2": "SeamlessM4T v2's text and speech encoders (transformers); in, 1..L, out (+ len)",
    "sonar": "SONAR's text encoder and per-language speech encoders (official checkpoints); in, 1..L, pool",
    "salmonn": "SALMONN-7B (official .pth + Whisper + BEATs + Vicuna); joint pass; enc, in, 1..L, out",
    "qwen2_audio": "Qwen2-Audio-7B(-Instruct) (transformers); joint pass; enc, in, 1..L, out",
    "qwen2_5_omni": "Qwen2.5-Omni's thinker (transformers); joint pass; enc, in, 1..L, out",
    "audioflamingo3": "Audio Flamingo 3 (transformers); joint pass; enc, in, 1..L, out",
    "hf_encoders": "any transformers text encoder with any speech encoder; in, 1..L (+ pool)",
}


def adapter_class(name: str):
    module, _, cls = ADAPTERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
