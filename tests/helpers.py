"""Small helpers for tests: comparing stores byte for byte, the README's Python example."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def readme_python_example() -> tuple[str, str]:
    """The README's Python API example, without and with its logit-lens line, and that line (the lens needs a
    run with an audio LLM and `analysis.lens`, which the shared reference run is not)."""
    snippet = re.search(r"## Python API.*?```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    lens_line = next(line for line in snippet.splitlines() if "r.lens(" in line)
    return snippet.replace(lens_line, ""), lens_line
