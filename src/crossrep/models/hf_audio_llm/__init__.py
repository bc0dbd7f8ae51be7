"""`hf_audio_llm`: any audio LLM in transformers whose model_type has a recipe, read from a hub id or folder.

The checkpoint's config names its model_type; the recipe for it (this folder's `recipes.RECIPES`, or the adapter
of a family folder built on crossrep.models.audio_llm) supplies the model class, the audio placeholder and
template, how many audio tokens a clip becomes, and where the audio tower is; the decoder layers, final norm and
LM head are found by structure. `checkpoint: tiny:<model_type>` builds that recipe's small random model.
Options are the audio LLMs' (prompt, template, text_positions, audio_positions, text_input); the template's
default is the recipe's, filled in when the model is planned.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ...errors import ConfigError, ModelError
from ..audio_llm import AudioLLM
from ..base import Adapter, ModelSpec
from .recipes import RECIPES, Qwen3OmniRecipe, StructuralAudioLLM, VoxtralRecipe

FAMILY_FOLDERS = ("qwen2_audio", "qwen2_5_omni", "audioflamingo3")  # AudioLLM families with their own folder


def recipes() -> dict[str, type[AudioLLM]]:
    """model_type -> the AudioLLM class that reads it."""
    out = dict(RECIPES)
    for folder in FAMILY_FOLDERS:
        module = importlib.import_module(f"crossrep.models.{folder}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, AudioLLM) and value.MODEL_TYPE:
                for kind in (value.MODEL_TYPE,) + value.ALSO_ACCEPTED:
                    out.setdefault(kind, value)
    return out


def recipe(checkpoint: str) -> type[AudioLLM]:
    """The recipe for a resolved checkpoint, from its config's model_type."""
    from transformers import AutoConfig

    from ..audio_llm import from_pretrained

    kind = from_pretrained(AutoConfig, checkpoint, "the audio LLM config").model_type
    known = recipes()
    if kind not in known:
        raise ModelError(f"{checkpoint}: model_type {kind!r} has no hf_audio_llm recipe (known: "
                         f"{', '.join(sorted(known))}); add a class to crossrep/models/hf_audio_llm/recipes.py")
    return known[kind]


class HFAudioLLMAdapter(Adapter):
    """Dispatches to the recipe of the checkpoint's model_type: constructing it returns the recipe's adapter."""

    joint_inputs = True
    offers_lens = True
    device_features = True
    max_seconds = 30.0

    def __new__(cls, checkpoint: str, options: dict, device: str = "auto", dtype: str = "float32",
                features: str = "cpu"):
        return recipe(checkpoint)(checkpoint, options, device=device, dtype=dtype, features=features)

    def __init__(self, *args, **kwargs):  # never reached: __new__ returns the recipe's adapter
        raise AssertionError("HFAudioLLMAdapter is a dispatcher")

    def forward(self, modality, iso, features, points):  # never reached, as __init__
        raise AssertionError("HFAudioLLMAdapter is a dispatcher")

    @classmethod
    def check_options(cls, raw: dict, prefix: str) -> dict:
        """The options every recipe shares, checked against Voxtral's placeholder for the template's shape; the
        recipe's own check (its placeholder, its template) runs again when the checkpoint is known (`spec`)."""
        raw = dict(raw or {})
        template = raw.pop("template", None)
        checked = VoxtralRecipe.check_options(raw, prefix)
        checked.pop("template")
        return checked if template is None else dict(checked, template=template)

    @classmethod
    def resolve(cls, checkpoint, cache: Path) -> str:
        if isinstance(checkpoint, str) and checkpoint.startswith("tiny:"):
            kind = checkpoint.removeprefix("tiny:")
            known = recipes()
            if kind not in known:
                raise ConfigError(f"checkpoint {checkpoint!r}: no recipe for model_type {kind!r} (known: "
                                  f"{', '.join(sorted(known))})")
            return known[kind].resolve("tiny", cache)
        if checkpoint == "tiny":
            raise ConfigError("hf_audio_llm checkpoint: `tiny` needs a model_type, e.g. `tiny:voxtral`")
        if not isinstance(checkpoint, str):
            raise ConfigError(f"an hf_audio_llm checkpoint is a hub id, a local folder or tiny:<model_type>, got "
                              f"{checkpoint!r}")
        return checkpoint

    @classmethod
    def spec(cls, checkpoint: str, options: dict) -> ModelSpec:
        r = recipe(checkpoint)
        full = r.check_options(options, "options")
        spec = r.spec(checkpoint, full)
        return ModelSpec(checkpoint=spec.checkpoint, points=spec.points, pairs=spec.pairs,
                         languages=spec.languages, advice=spec.advice, options=full)

    @classmethod
    def text_tokenizer(cls, checkpoint: str, options: dict):
        return recipe(checkpoint).text_tokenizer(checkpoint, options)

    @classmethod
    def token_texts(cls, checkpoint: str, options: dict, ids: list[int]) -> list[str]:
        return recipe(checkpoint).token_texts(checkpoint, options, ids)


__all__ = ["HFAudioLLMAdapter", "Qwen3OmniRecipe", "StructuralAudioLLM", "VoxtralRecipe", "recipe", "recipes"]
