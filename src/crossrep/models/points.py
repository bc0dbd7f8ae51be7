"""Point lists the families share: an input, numbered layers and a top point, and same-name cross-modal pairs."""

from __future__ import annotations

from ..point import Point


def stack(width: int, layers: int, *, first: str = "input", first_width: int | None = None,
          top: tuple[str, str, float] | None = ("out", "output", 0.5)) -> list[Point]:
    """"in" (depth 0, kind `first`, `first_width` wide if given), "1".."L" (depth i) and, unless `top` is
    None, a top point (name, kind, depth offset above L): after a final norm ("out") or a pooling step."""
    points = [Point("in", first_width or width, 0.0, first)]
    points += [Point(str(i), width, float(i)) for i in range(1, layers + 1)]
    if top is not None:
        name, kind, offset = top
        points.append(Point(name, width, layers + offset, kind))
    return points


def same_name_pairs(text: list[Point], speech: list[Point]) -> list[tuple[str, str, str]]:
    """(label, text point, speech point) for every point name both modalities offer, in text order."""
    names = {p.name for p in speech}
    return [(p.name, p.name, p.name) for p in text if p.name in names]
