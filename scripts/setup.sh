#!/usr/bin/env bash
# Create .venv and install policygen with what the main job and the tests need.
# PyTorch is pinned to 2.13.0 first: on the project's 2-core CPU machines that is a local CPU build;
# a looser spec would pull a multi-GB CUDA build. EnvPool (fast MuJoCo stepping) is installed too.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip >/dev/null
if ! .venv/bin/python -c "import torch, sys; sys.exit(not torch.__version__.startswith('2.13.0'))" 2>/dev/null; then
  "${PIP[@]}" "torch==2.13.0"
fi
"${PIP[@]}" -e ".[envpool,ray,dev]"
echo "policygen installed in .venv ($(.venv/bin/python -c 'import policygen; print(policygen.__version__)'))" >&2
