"""The adapter interface: which points a model offers per modality, and one pooled vector per sentence and point."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, ModelError
from ..point import Point


@dataclass(frozen=True)
class ModelSpec:
    """What the store and the reduction need to know of a model, read from its config alone."""

    checkpoint: str | Mapping  # what is loaded: a hub id or local path, or a family's mapping of them
    points: dict[str, tuple[Point, ...]]  # modality -> points in model order
    pairs: tuple[tuple[str, str, str], ...]  # cross-modal comparisons: (label, text point, speech point)
    languages: dict[str, frozenset[str] | None]  # modality -> ISO codes it can take (None: any)
    advice: dict[str, str] = field(default_factory=dict)  # modality -> what to do about a missing language
    options: dict | None = None  # the options completed with what only the checkpoint decides (None: as checked)

    def check_language(self, model: str, iso: str, modality: str) -> None:
        known = self.languages[modality]
        if known is not None and iso not in known:
            hint = f". {self.advice[modality]}" if modality in self.advice else ""
            where = f" ({self.checkpoint})" if isinstance(self.checkpoint, str) else ""
            raise ModelError(f"model {model}{where} has no {modality} support for {iso}; it knows "
                             f"{', '.join(sorted(known))}{hint}")

    def select(self, model: str, modality: str, names: tuple[str, ...] | None) -> tuple[Point, ...]:
        offered = self.points[modality]
        if names is None:
            return offered
        by_name = {p.name: p for p in offered}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ModelError(f"model {model}: {modality} has no point {unknown[0]!r}; it offers "
                             f"{', '.join(by_name)}")
        return tuple(by_name[n] for n in names)


class Adapter(ABC):
    """A loaded model: `embed` maps a batch of sentences to {point: (batch, width) float64}, in two steps:
    `featurize` (CPU work that needs no weights: tokenising, feature extraction; the extractor runs it in
    DataLoader workers ahead of the forward pass) and `forward` (the model, pooling on its device).

    Everything else is a classmethod that needs no weights: `check_options`, `resolve`, `spec`, `text_tokenizer`.
    Joint adapters (audio LLMs) also offer `embed_joint`, one forward pass for both modalities."""

    joint_inputs = False  # True: both modalities get (16 kHz clip, transcript) pairs (audio LLMs)
    max_seconds: float | None = None  # longest clip the model takes; longer ones are refused naming the file
    device_features = False  # True: with `features: device`, audio features are computed on the model's device

    @abstractmethod
    def __init__(self, checkpoint, options: dict, device: str = "auto", dtype: str = "float32",
                 features: str = "cpu"):
        """Load the weights of what `resolve` returned, with the options `check_options` returned, on `device`
        ("auto", "cpu", "cuda") in `dtype` (a key of DTYPES); `features: device` computes audio features on the
        device where the adapter can (`device_features`), else they stay on the CPU."""

    @classmethod
    def check_options(cls, raw: dict, prefix: str) -> dict:
        """The job's `options` for this model, checked, with defaults filled in (recorded with the results)."""
        if raw:
            raise ConfigError(f"{prefix}.{next(iter(raw))}: the {cls.__name__} takes no options")
        return {}

    @classmethod
    @abstractmethod
    def resolve(cls, checkpoint, cache: Path):
        """The hub id(s) or local path(s) to load; builds the small random model for `checkpoint: tiny`."""

    @classmethod
    @abstractmethod
    def spec(cls, checkpoint, options: dict) -> ModelSpec:
        """Points, pairs and languages from the (resolved) checkpoint's config, without loading weights."""

    @classmethod
    def text_tokenizer(cls, checkpoint, options: dict) -> Callable[[str], list[int]] | None:
        """A function from a sentence to its token ids as the text path tokenises it (the sentence's pieces
        only: no special tokens or language tags), for token-sharing analyses; None: no text tokenizer."""
        return None

    def featurize(self, modality: str, iso: str, inputs: list):
        """What `forward` takes, computed on the CPU without the weights (picklable; default: the inputs).
        Text `inputs` are strings, speech `inputs` 16 kHz float32 arrays (with `joint_inputs`, both are
        (clip, transcript) pairs)."""
        return inputs

    @abstractmethod
    def forward(self, modality: str, iso: str, features, points: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Mean-pooled activations {point: (batch, width)} of a featurized batch, left on the model's device."""

    def embed(self, modality: str, iso: str, inputs: list, points: tuple[str, ...]) -> dict[str, np.ndarray]:
        """`forward` of `featurize`, brought to the host as float64 arrays."""
        return to_host(self.forward(modality, iso, self.featurize(modality, iso, inputs), points))


# transformers 5 swaps layers for kernels fetched from the Hugging Face Hub by default (`use_kernels`) when a model
# loads on a GPU: compute nodes are offline and a swapped layer computes other numbers, so every model crossrep
# loads runs its own code (keyword arguments of every `from_pretrained` of a model's weights)
PRETRAINED = {"use_kernels": False}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # extract.dtype


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("extract.device is cuda but no GPU is visible (CUDA_VISIBLE_DEVICES, driver?)")
    return torch.device(device)


def on(device: torch.device, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A featurized tensor on the model's device: asynchronous from pinned memory (the DataLoader pins it)."""
    return tensor.to(device=device, dtype=dtype, non_blocking=True) if dtype else tensor.to(device, non_blocking=True)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each sequence's valid positions, in float64 on the states' device: (batch, time, dim) ->
    (batch, dim). Every sequence must have a valid position (checked on the host by `to_host`, without a
    device synchronisation here)."""
    h = hidden.detach().to(torch.float64)
    m = mask.to(device=h.device, dtype=torch.float64).unsqueeze(-1)
    return (h * m).sum(dim=1).div(m.sum(dim=1))


def to_host(pooled: dict) -> dict[str, np.ndarray]:
    """Pooled vectors as float64 numpy arrays, with one device-to-host copy for all tensors of a device (the
    logit lens's records are built on the host beside pooled vectors on the GPU)."""
    out = {k: np.asarray(v, dtype=np.float64) for k, v in pooled.items() if not torch.is_tensor(v)}
    for device in {v.device for v in pooled.values() if torch.is_tensor(v)}:
        tensors = {k: v for k, v in pooled.items() if torch.is_tensor(v) and v.device == device}
        names = list(tensors)
        flat = torch.cat([tensors[k].detach().to(torch.float64) for k in names], dim=1).cpu().numpy()
        at = 0
        for k in names:
            width = tensors[k].shape[1]
            out[k] = flat[:, at:at + width]
            at += width
    return {k: out[k] for k in pooled}


def hidden_input(args: tuple, kwargs: dict) -> torch.Tensor:
    """The hidden states a transformers layer was called with, positionally or by keyword."""
    return args[0] if args else kwargs["hidden_states"]


class Recorder:
    """Forward hooks that keep module inputs or outputs for one forward pass, in registration order."""

    def __init__(self):
        self.values: dict[str, torch.Tensor] = {}
        self.handles = []

    def output(self, module: torch.nn.Module, name: str) -> None:
        def hook(_mod, _args, out):
            if hasattr(out, "last_hidden_state"):  # a transformers ModelOutput
                out = out.last_hidden_state
            self.values[name] = out[0] if isinstance(out, tuple) else out

        self.handles.append(module.register_forward_hook(hook))

    def input(self, module: torch.nn.Module, name: str) -> None:
        def hook(_mod, args, kwargs):
            self.values[name] = hidden_input(args, kwargs)

        self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def layers(self, layers, first_input: bool = True) -> None:
        """Each layer's output as "1".."L" and, with `first_input`, the first layer's input as "in"."""
        if first_input:
            self.input(layers[0], "in")
        for i, layer in enumerate(layers, 1):
            self.output(layer, str(i))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def load_error(what: str, checkpoint: str, exc: Exception) -> ModelError:
    """A loading failure that says what is missing and, offline, how to get it."""
    import os
    from pathlib import Path

    if not Path(checkpoint).exists() and os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return ModelError(f"{what} {checkpoint!r} is not in the local Hugging Face cache "
                          f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}) and the hub is offline "
                          f"here (HF_HUB_OFFLINE=1): run `crossrep prefetch JOB` on a login node first")
    return ModelError(f"cannot load {what} from {checkpoint!r}: {exc}")
