#!/usr/bin/env bash
# Set up (idempotent) and run the main job on its small built-in default. Extra args go to `policygen demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/policygen demo "$@"
