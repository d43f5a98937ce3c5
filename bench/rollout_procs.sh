#!/usr/bin/env bash
# The Gymnasium backend in one process and in two (--env-threads 2: this process and a worker), each beside
# the raw backend with the same processes, in one run per line. Writes bench/results/rollout-procs-*.json
# with the date, machine and commit. Re-run: bash bench/rollout_procs.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
S="${1:-20}"
PG=.venv/bin/policygen
for procs in 1 2; do
  $PG bench rollout --env Hopper-v5 --policies 64 --hidden 256,256 --seconds "$S" --backend gymnasium --num-envs 16 \
    --env-threads $procs > bench/results/rollout-procs-hopper-p$procs.json
  .venv/bin/python bench/stamp_rollout.py bench/results/rollout-procs-hopper-p$procs.json
  $PG bench rollout --env Swimmer-v5 --policies 16 --hidden 64,64 --seconds "$S" --backend gymnasium --num-envs 16 \
    --env-threads $procs > bench/results/rollout-procs-swimmer-p$procs.json
  .venv/bin/python bench/stamp_rollout.py bench/results/rollout-procs-swimmer-p$procs.json
  $PG bench rollout --env Pusher-v5 --policies 32 --hidden 64,64 --seconds "$S" --backend gymnasium --num-envs 32 \
    --env-threads $procs > bench/results/rollout-procs-pusher-p$procs.json
  .venv/bin/python bench/stamp_rollout.py bench/results/rollout-procs-pusher-p$procs.json
done
