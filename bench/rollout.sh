#!/usr/bin/env bash
# The foundation issue's engine figures, each measured side by side with the raw backend in one run:
#   EnvPool and Gymnasium backends, Hopper-v5, 64 policies of 2x256; peak memory with 256 policies.
# Writes bench/results/rollout-*.json and engine-micro.json with the date, machine and commit.
# Re-run: bash bench/rollout.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
S="${1:-30}"
PG=.venv/bin/policygen
stamp() { .venv/bin/python bench/stamp_rollout.py "$1"; }
$PG bench rollout --env Hopper-v5 --policies 64 --hidden 256,256 --seconds "$S" --backend envpool > bench/results/rollout-envpool-64.json
stamp bench/results/rollout-envpool-64.json
$PG bench rollout --env Hopper-v5 --policies 64 --hidden 256,256 --seconds "$S" --backend gymnasium --num-envs 16 > bench/results/rollout-gymnasium-64.json
stamp bench/results/rollout-gymnasium-64.json
$PG bench rollout --env Hopper-v5 --policies 256 --hidden 256,256 --seconds "$S" --backend envpool > bench/results/rollout-envpool-256.json
stamp bench/results/rollout-envpool-256.json
# fixed-length episodes (no tail): the engine's own overhead at 64 and 16 slots
$PG bench rollout --env Swimmer-v5 --policies 64 --hidden 256,256 --seconds "$S" --backend envpool > bench/results/rollout-envpool-swimmer-64.json
stamp bench/results/rollout-envpool-swimmer-64.json
$PG bench rollout --env Swimmer-v5 --policies 64 --hidden 256,256 --seconds "$S" --backend envpool --num-envs 16 > bench/results/rollout-envpool-swimmer-16.json
stamp bench/results/rollout-envpool-swimmer-16.json
# why: the forward's cost, EnvPool's per-call latency, the forward's cache footprint
.venv/bin/python bench/engine_micro.py > bench/results/engine-micro.json
