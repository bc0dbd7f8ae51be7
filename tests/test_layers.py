"""The import contract: data flows one way through crossrep's layers, and the light commands stay light.

Every module of the package (analysis/ installed as crossrep.analysis included) has a layer; an import, at the
top of a module or inside a function, may only go to its own layer or a lower one.
"""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.unit

# lowest first; a module belongs to the longest name below that prefixes it
LAYERS = [
    ["errors", "point", "languages", "version", "progress", "paths", "sacct", "lock"],
    ["config", "profile"],
    ["data"],
    ["models"],
    ["store"],
    ["plan"],
    ["extract", "prefetch", "timing", "measures", "retrieve", "probes", "svcca", "families", "stats"],
    ["reduce", "readout", "scheduler"],
    ["results", "lensdata"],
    ["analysis"],
    ["launch", "stages"],
    ["status", "cli", "__main__", "api", ""],  # "": the package itself, whose __init__ is the public API
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def modules(src: Path, analysis: Path) -> dict[str, Path]:
    """Dotted name (below crossrep) -> file, for the package at `src` and the analysis folder."""
    out = {}
    for root, package in ((src, ""), (analysis, "analysis")):
        for path in root.rglob("*.py"):
            if root == src and path.relative_to(src).parts[0] in ("analysis", "jobs", "slurm"):
                continue  # links to the top-level folders
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(([package] if package else []) + parts)] = path
    return out


def layer(name: str) -> int:
    if not name:
        return RANK[""]
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        head = ".".join(parts[:k])
        if head in RANK:
            return RANK[head]
    raise AssertionError(f"crossrep.{name}: no layer (add it to LAYERS in tests/test_layers.py)")


def imports(name: str, path: Path, is_package: bool) -> list[tuple[int, str]]:
    """(line, imported crossrep module below `crossrep.`) for every import in the file."""
    package = name.split(".") if is_package else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["crossrep"] + (package[:len(package) - node.level + 1] if node.level > 1 else package)
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found += [(node.lineno, f"{mod}.{a.name}") for a in node.names]  # a name or a submodule
    out = []
    for line, full in found:
        if full == "crossrep" or full.startswith("crossrep."):
            out.append((line, full.removeprefix("crossrep").lstrip(".")))
    return out


def violations(src: Path, analysis: Path) -> list[str]:
    mods = modules(src, analysis)
    bad = []
    for name, path in sorted(mods.items()):
        here = layer(name)
        for line, target in imports(name, path, path.name == "__init__.py"):
            while target and target not in mods:  # `from x import name`: the module is x
                target = target.rpartition(".")[0]
            if layer(target) > here:
                bad.append(f"{path}:{line}: crossrep.{name or '__init__'} (layer {here}) imports "
                           f"crossrep.{target} (layer {layer(target)})")
    return bad


def test_no_module_imports_a_higher_layer():
    assert violations(REPO / "src" / "crossrep", REPO / "analysis") == []


def test_the_contract_catches_an_upward_import(tmp_path):
    src = tmp_path / "crossrep"
    shutil.copytree(REPO / "src" / "crossrep", src, symlinks=True)
    shutil.copytree(REPO / "analysis", tmp_path / "analysis")
    store = src / "store.py"
    store.write_text(store.read_text() + "\n\ndef _late():\n    from .reduce import compute\n")
    (tmp_path / "analysis" / "figures.py").write_text("from crossrep.launch import launcher\n")
    found = violations(src, tmp_path / "analysis")
    assert len(found) == 2
    assert any("crossrep.store (layer 4) imports crossrep.reduce (layer 7)" in v for v in found)
    assert any("crossrep.analysis.figures (layer 9) imports crossrep.launch (layer 10)" in v for v in found)


def loaded_by(code: str, tmp_path: Path) -> set[str]:
    """The top-level packages a fresh interpreter has imported after running `code`."""
    proc = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted({m.split('.')[0] "
                                                        "for m in sys.modules})))"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(proc.stdout.split("\n")[-2].split())


def test_help_and_status_load_neither_torch_nor_transformers(tmp_path, make_job):
    job = make_job()
    help_ = loaded_by("from crossrep.cli import parser\nparser().format_help()", tmp_path)
    status = loaded_by("from crossrep.cli import main\n"
                       f"assert main(['status', {str(job)!r}]) == 1  # nothing extracted yet", tmp_path)
    for name, loaded in (("--help", help_), ("status", status)):
        assert not {"torch", "transformers", "submitit"} & loaded, name
