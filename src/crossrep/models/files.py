"""Checkpoint references as jobs write them: a local path, a file on the hub (`hf://owner/repo/path/in/repo`)
or a hub repository id (`owner/repo`, a whole transformers folder). Models with several files take a mapping
of such references; `leaves` lists them for `crossrep prefetch`."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from .base import load_error

HUB_FILE = "hf://"
# other frameworks' weights in hub repositories, never loaded here
NOT_TORCH = ["*.msgpack", "*.h5", "*.ot", "*.onnx", "flax_model*", "tf_model*", "rust_model*"]


def leaves(checkpoint) -> list[str]:
    """Every reference in a checkpoint string or (nested) mapping, in order."""
    if isinstance(checkpoint, dict):
        return [ref for value in checkpoint.values() for ref in leaves(value)]
    return [checkpoint]


def local_file(ref: str, what: str) -> Path:
    """The file a reference names, from the hub cache for `hf://` references (downloaded where online)."""
    if ref.startswith(HUB_FILE):
        parts = ref[len(HUB_FILE):].split("/", 2)
        if len(parts) != 3 or not all(parts):
            raise ModelError(f"{what}: {ref!r} is not of the form hf://owner/repo/path/in/repo")
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(f"{parts[0]}/{parts[1]}", parts[2]))
        except Exception as exc:  # offline and not cached, no such file, no access
            raise load_error(what, ref, exc) from None
    path = Path(ref)
    if not path.is_file():
        raise ModelError(f"{what}: {ref} is not a file")
    return path


def fetch(ref: str) -> str:
    """Put one reference into the local hub cache; a line saying what was done."""
    if Path(ref).exists():
        return f"local {ref}, nothing to download"
    if ref.startswith(HUB_FILE):
        return f"{ref} cached at {local_file(ref, 'checkpoint')}"
    from huggingface_hub import snapshot_download

    try:
        return f"{ref} cached at {snapshot_download(ref, ignore_patterns=NOT_TORCH)}"
    except Exception as exc:  # network, authentication or a wrong id
        raise ModelError(f"cannot download {ref!r}: {exc}") from None
