"""Paths recorded inside a run folder: written relative to it (`<out>/REL`), read back inside the folder where
the run is now, so that a copied or moved run folder verifies, resumes and repairs in its new place."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

OUT = "<out>"  # a recorded path inside the output folder: `<out>/checkpoints/tiny-seamless_m4t_v2`


def portable(value: Any, out: Path) -> Any:
    """`value` as a record inside `out` keeps it: every string that is an absolute path inside `out` written
    relative to it (`<out>/REL`), through mappings and lists; everything else (hub ids, `hf://` references,
    paths elsewhere) as it is."""
    if isinstance(value, dict):
        return {k: portable(v, out) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(portable(v, out) for v in value)
    if isinstance(value, str) and os.path.isabs(value):
        base, path = os.path.abspath(out), os.path.abspath(value)
        if path == base:
            return OUT
        if path.startswith(base.rstrip(os.sep) + os.sep):
            return f"{OUT}/{Path(os.path.relpath(path, base)).as_posix()}"
    return value


def located(value: Any, out: Path) -> Any:
    """A recorded value with every `<out>/REL` path made absolute again, inside the folder `out` is now."""
    if isinstance(value, dict):
        return {k: located(v, out) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(located(v, out) for v in value)
    if isinstance(value, str) and (value == OUT or value.startswith(OUT + "/")):
        return str(Path(os.path.abspath(out)).joinpath(*value[len(OUT) + 1:].split("/")))
    return value
