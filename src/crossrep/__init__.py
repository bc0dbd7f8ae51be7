"""crossrep: how multimodal foundation models represent one sentence across languages and modalities.

`crossrep.open(out)` reads a run's results; `crossrep.compare(x, y)` scores two arrays with a permutation null
and intervals (crossrep.api); `crossrep.retrieval(src, tgt)` is the top-1 retrieval accuracy (crossrep.retrieve). Both load on first use, so `import crossrep` stays light.
"""

from .version import __version__

__all__ = ["Comparison", "Results", "__version__", "compare", "open", "retrieval"]


def __getattr__(name: str):
    if name in ("open", "compare", "Results", "Comparison"):
        from . import api

        return getattr(api, name)
    if name == "retrieval":
        from .retrieve import retrieval

        return retrieval
    raise AttributeError(f"module 'crossrep' has no attribute {name!r}")
