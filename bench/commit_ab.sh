#!/usr/bin/env bash
# Two commits side by side on one `policygen train` command, alternated ROUNDS times, so machine drift hits both:
# prints each run's training wall (summary.json wall_s) and final evaluation return.
# Usage: bash bench/commit_ab.sh OLD NEW ROUNDS -- train ARGS...   (no --out: each run writes to a scratch dir)
# e.g.   bash bench/commit_ab.sh 3b50e67 151a45b 2 -- ars --env Swimmer-v5 --steps 500000 --seed 1 --eval-every 500000
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 rounds=$3; shift 3; [ "$1" = "--" ] && shift
scratch=$(mktemp -d)
trap 'for c in "$old" "$new"; do git worktree remove --force "$scratch/$c" 2>/dev/null || true; done; rm -rf "$scratch"' EXIT
for c in "$old" "$new"; do git worktree add -q -f --detach "$scratch/$c" "$c"; done
echo "date $(date -u +%FT%TZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
for r in $(seq "$rounds"); do
  for c in "$old" "$new"; do
    PYTHONPATH="$scratch/$c/src" .venv/bin/python -m policygen train "$@" --out "$scratch/run-$c" --force --quiet >/dev/null
    .venv/bin/python -c "import json,sys; d=json.load(open(sys.argv[1])); print(f'{sys.argv[2]} round {sys.argv[3]}: wall_s {d[\"wall_s\"]:.1f}, final {d[\"final_eval_return\"]:.3f}')" "$scratch/run-$c/summary.json" "$c" "$r"
  done
done
