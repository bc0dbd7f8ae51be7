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
    "audioflamingo3": "crossrep.models.audioflamingo3:AudioFlamingo3Adapter",
}


def adapter_class(name: str):
    module, _, cls = ADAPTERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
