#!/usr/bin/env bash
# Create the isolated venv that runs the OFFICIAL SONAR code (fairseq2 + sonar-space) to regenerate
# tests/data/sonar_reference.pt.  fairseq2n 0.5.2 pins torch==2.8.0, so this must not share a venv with crossrep.
#   usage: bash tests/sonar_reference/setup.sh [VENV_DIR]     (default: <repo>/.venv-sonar-ref)
# System library needed by fairseq2n: libsndfile1 (Debian: apt-get install -y libsndfile1).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-$REPO/.venv-sonar-ref}"
PYTHON="${PYTHON:-python3.11}"
if ! command -v "$PYTHON" >/dev/null 2>&1; then PYTHON=python3; fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
# torch 2.8.0 from PyPI (Linux x86_64: the CUDA build, several GB; the reference itself runs on CPU).
"$VENV/bin/python" -m pip install "torch==2.8.0" "torchaudio==2.8.0"  # sonar-space needs torchaudio; unpinned, pip picks an ABI-incompatible newer one
"$VENV/bin/python" -m pip install "fairseq2n==0.5.2" "fairseq2==0.5.2" "sonar-space==0.5.0" "torch==2.8.0" "torchaudio==2.8.0"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for d in ("torch", "torchaudio", "fairseq2", "fairseq2n", "sonar-space"):
    print(d, md.version(d))
import torchaudio, fairseq2n, sonar  # noqa: F401  (fails early if libsndfile1 or the torch pin is wrong)
PY
