#!/usr/bin/env bash
# Create the isolated venv that runs the peers' OWN code for the shape measures, to regenerate
# tests/data/shape_reference.npz: netrep (angular Procrustes distance), rsatoolbox (RSA), platonic-rep (CKNNA).
#   usage: bash tests/shape_reference/setup.sh [VENV_DIR]      (default: <repo>/.venv-shape-ref)
# netrep and platonic-rep are not on PyPI: NETREP_SRC and PLATONIC_SRC may name local checkouts (of the commits
# below); without them they are installed / cloned from GitHub.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-$REPO/.venv-shape-ref}"
NETREP_COMMIT=0186b8a      # ahwillia/netrep
PLATONIC_COMMIT=dcd76ba    # minyoungg/platonic-rep
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install "torch==2.13.0"   # platonic-rep's metrics.py is torch code (CPU build)
"$VENV/bin/python" -m pip install "rsatoolbox==0.3.2" numpy scipy scikit-learn tqdm
if [ -n "${NETREP_SRC:-}" ]; then
  "$VENV/bin/python" -m pip install --no-deps "$NETREP_SRC"
else
  "$VENV/bin/python" -m pip install --no-deps "git+https://github.com/ahwillia/netrep@$NETREP_COMMIT"
fi
PLATONIC="$VENV/platonic-rep"
if [ -n "${PLATONIC_SRC:-}" ]; then
  rm -rf "$PLATONIC" && cp -r "$PLATONIC_SRC" "$PLATONIC"
else
  git clone -q https://github.com/minyoungg/platonic-rep "$PLATONIC" && git -C "$PLATONIC" checkout -q "$PLATONIC_COMMIT"
fi
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for d in ("torch", "rsatoolbox", "netrep", "numpy", "scipy"):
    print(d, md.version(d))
PY
