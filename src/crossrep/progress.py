"""Progress on long work: a bar on a terminal, nothing in logs or under `--quiet`, and one line per stage with
its time either way (stderr, where the other messages go).

A stage that runs in another process (the local executor's reduce and aggregate) cannot draw on the user's
terminal: it also reports its bars and lines to `<out>/logs/progress.json` (`report_to`), which the process
that waits for it shows (`relay`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

QUIET = False  # set by the CLI's --quiet
CHANNEL: Path | None = None  # where this process reports for a waiting one (set by crossrep.stages)
_lines: list[str] = []
INTERVAL = 0.5  # seconds between reports to the channel


def enabled() -> bool:
    """Whether bars are drawn: stderr is a terminal and --quiet was not given."""
    return not QUIET and sys.stderr.isatty()


def channel(out: Path) -> Path:
    return Path(out) / "logs" / "progress.json"


def report_to(out: Path) -> None:
    """Report this process's bars and stage lines for whoever waits on it (a new stage: a new file)."""
    global CHANNEL
    CHANNEL = channel(out)
    _lines.clear()
    _write({"desc": "", "n": 0, "total": 0})


def _write(state: dict) -> None:
    if CHANNEL is None:
        return
    CHANNEL.parent.mkdir(parents=True, exist_ok=True)
    tmp = CHANNEL.with_name(f".{CHANNEL.name}.{os.getpid()}")
    tmp.write_text(json.dumps({**state, "lines": _lines}))
    tmp.replace(CHANNEL)


class _Bar:
    """A tqdm bar that also reports its count to the channel, at most every INTERVAL seconds."""

    def __init__(self, total: int, desc: str, unit: str):
        from tqdm import tqdm

        self.tqdm = tqdm(total=total, desc=f"crossrep: {desc}", unit=unit, file=sys.stderr,
                         disable=not enabled(), dynamic_ncols=True, leave=False)
        self.state = {"desc": desc, "n": 0, "total": total, "unit": unit}
        self.sent = 0.0
        _write(self.state)

    def update(self, n: int = 1) -> None:
        self.tqdm.update(n)
        self.state["n"] += n
        if CHANNEL is not None and time.monotonic() - self.sent > INTERVAL:
            self.sent = time.monotonic()
            _write(self.state)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.tqdm.close()
        _write(self.state)


def bar(total: int, desc: str, unit: str = "task") -> _Bar:
    """A progress bar on stderr (drawn where `enabled()`), reported to the channel where there is one."""
    return _Bar(total, desc, unit)


@contextlib.contextmanager
def stage(desc: str):
    """Print one line when `desc` is done, with its time (always: logs keep it)."""
    start = time.perf_counter()
    yield
    line = f"crossrep: {desc} done in {time.perf_counter() - start:.1f} s"
    print(line, file=sys.stderr, flush=True)
    _lines.append(line)
    _write({"desc": "", "n": 0, "total": 0})


def relay(out: Path, running, interval: float = 0.2) -> None:
    """While `running()`, show what a stage in another process reports for `out`: its stage lines, and its bar
    where `enabled()`."""
    path, shown, current = channel(out), 0, None
    with contextlib.ExitStack() as stack:
        while True:
            alive = running()
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):  # not written yet, or replaced while read
                state = None
            if state is not None:
                for line in state.get("lines", [])[shown:]:
                    if current is not None:
                        current.clear()
                    print(line, file=sys.stderr, flush=True)
                shown = max(shown, len(state.get("lines", [])))
                if enabled() and state.get("total"):
                    if current is None or current.desc != f"crossrep: {state['desc']}" \
                            or current.total != state["total"]:
                        stack.close()
                        from tqdm import tqdm

                        current = stack.enter_context(tqdm(total=state["total"], desc=f"crossrep: {state['desc']}",
                                                           unit=state.get("unit", "task"), file=sys.stderr,
                                                           dynamic_ncols=True, leave=False))
                    current.update(state["n"] - current.n)
            if not alive:
                return
            time.sleep(interval)
