"""crossrep: how multimodal foundation models represent one sentence across languages and modalities.

`crossrep.open(out)` reads a run's results; `crossrep.compare(x, y)` scores two arrays with a permutation null
and a bootstrap interval (crossrep.api). Both load on first use, so `import crossrep` stays light.
"""

from .version import __version__

__all__ = ["Comparison", "Results", "__version__", "compare", "open"]


def __getattr__(name: str):
    if name in ("open", "compare", "Results", "Comparison"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'crossrep' has no attribute {name!r}")
