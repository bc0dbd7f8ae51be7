"""Progress on long work: a bar on a terminal, nothing in logs or under `--quiet`, and one line per stage with
its time either way (stderr, where the other messages go)."""

from __future__ import annotations

import contextlib
import sys
import time

QUIET = False  # set by the CLI's --quiet


def enabled() -> bool:
    """Whether bars are drawn: stderr is a terminal and --quiet was not given."""
    return not QUIET and sys.stderr.isatty()


def bar(total: int, desc: str, unit: str = "task"):
    """A tqdm bar on stderr (disabled where `enabled()` is false)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=f"crossrep: {desc}", unit=unit, file=sys.stderr, disable=not enabled(),
                dynamic_ncols=True, leave=False)


@contextlib.contextmanager
def stage(desc: str):
    """Print one line when `desc` is done, with its time (always: logs keep it)."""
    start = time.perf_counter()
    yield
    print(f"crossrep: {desc} done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
