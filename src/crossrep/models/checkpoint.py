"""Reading checkpoint files and checking their tensors against a model, with errors that name every problem."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelError


def tensor_report(found: dict[str, tuple], expected: dict[str, tuple], source: str, unused=(), optional=()) -> None:
    """Raise a ModelError listing every missing, unexpected and mis-shaped tensor of a checkpoint.

    `found` and `expected` map names to shapes; names matching a pattern in `unused` may be present and are
    ignored; names in `optional` may be absent.
    """
    missing = sorted(k for k in expected if k not in found and k not in optional)
    unexpected = sorted(k for k in found if k not in expected and not any(p.fullmatch(k) for p in unused))
    shaped = sorted(f"{k} {list(found[k])} (expected {list(expected[k])})"
                    for k in expected if k in found and tuple(found[k]) != tuple(expected[k]))
    problems = []
    for label, names in (("missing", missing), ("mis-shaped", shaped), ("unexpected", unexpected)):
        if names:
            problems.append(f"{label} ({len(names)}): " + ", ".join(names))
    if problems:
        raise ModelError(f"{source}: " + "; ".join(problems))


def read_checkpoint(path: str | Path, what: str) -> dict:
    """`torch.load` of a local checkpoint without executing pickled code, with errors naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"{what} checkpoint {path} does not exist")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # files in the pre-1.6 format cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling and zip errors have many types
        raise ModelError(f"cannot read {what} checkpoint {path}: {exc}") from None


def loading_report(info: dict, source: str, keep) -> None:
    """transformers' loading info as a ModelError: missing, mis-shaped or unexpected tensors among those kept."""
    missing = sorted(k for k in info.get("missing_keys", ()) if keep(k))
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if keep(k))
    shaped = sorted(str(k) for k in info.get("mismatched_keys", ()) if keep(k[0] if isinstance(k, tuple) else k))
    problems = [f"{len(v)} {label}: {', '.join(v)}" for label, v in
                (("missing", missing), ("mis-shaped", shaped), ("unexpected", unexpected)) if v]
    if problems:
        raise ModelError(f"{source}: " + "; ".join(problems))
