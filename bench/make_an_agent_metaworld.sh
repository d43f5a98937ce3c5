#!/usr/bin/env bash
# Make-An-Agent on MetaWorld v3 (EnvPool), CPU scale. Stages, each one command (a shared 2-core machine:
# nice 19, one thread everywhere):
#   bench/make_an_agent_metaworld.sh ars     ROOT   # ARS runs: 4 seen tasks (snapshots), 2 unseen (prompts only)
#   bench/make_an_agent_metaworld.sh data    ROOT   # collect the seen runs, prompts for all 6, train the stages
#   bench/make_an_agent_metaworld.sh report  ROOT   # report-agent: generated vs BC vs training data, 3 noise levels
# Seen tasks come from the paper's training list, unseen from its held-out list (docs/make_an_agent.md says why
# these). ARS trains on 100-step episodes (success is reached within ~30-90 steps); collect, prompts and the
# report use the standard 500-step episodes.
set -euo pipefail
stage=$1
root=${2:-runs/maa-mw}
SEEN="Reach ButtonPress HandlePress PlateSlide"
UNSEEN="ReachWall HandlePressSide"
SEEN_STEPS=${SEEN_STEPS:-350000}
UNSEEN_STEPS=${UNSEEN_STEPS:-250000}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# one core at most (taskset), whatever threads EnvPool starts: the machine is shared with wall-clock benchmarks
pg() { taskset -c 1 nice -n 19 python -m policygen "$@"; }
mkdir -p "$root/prompts"
echo "$stage start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$root/times.log"
# rc first: the $(date) substitution below would reset $?
trap 'rc=$?; echo "$stage end $(date -u +%FT%TZ) rc $rc load $(cut -d" " -f1-3 /proc/loadavg)" >> "$root/times.log"' EXIT
# ARS V1 (raw observations): the data set folds every record's observation statistics into one reference
# (rebase_thetas), and with V2's per-run statistics MetaWorld's near-constant coordinates (std 0.0006-0.014)
# made the folded weights ~20-100x larger than the policies' own (median norm 6 -> 119), so the autoencoder's
# small relative errors became large behaviour errors. Raw observations need no folding. Reach-v3, 120k steps:
# V1 alpha=0.05 nu=0.05 gave 647, V2 alpha=0.1 nu=0.15 ~470.
ARS_SET=(--set bias=true --set normalize_obs=false --set step_size=0.05 --set noise=0.05 --set n_directions=16
         --set top=8)

case $stage in
ars)
  for t in $SEEN; do
    pg train ars --env "MetaWorld/$t-v3" --steps "$SEEN_STEPS" --num-envs 8 --seed 0 --snapshots 8 \
      --env-kwargs '{"max_episode_steps": 100}' --eval-episodes 5 "${ARS_SET[@]}" --out "$root/ars/$t" --quiet \
      > "$root/ars-$t.json"
  done
  for t in $UNSEEN; do
    pg train ars --env "MetaWorld/$t-v3" --steps "$UNSEEN_STEPS" --num-envs 8 --seed 0 \
      --env-kwargs '{"max_episode_steps": 100}' --eval-episodes 5 "${ARS_SET[@]}" --out "$root/ars/$t" --quiet \
      > "$root/ars-$t.json"
  done
  ;;
data)
  runs=(); for t in $SEEN; do runs+=("$root/ars/$t"); done
  pg collect "${runs[@]}" --out "$root/data" --copies 15 --noise 0.5 > "$root/collect.json"
  for t in $SEEN $UNSEEN; do
    pg generate "$root/ars/$t" --out "$root/prompt-policies/$t.safetensors" --force > /dev/null
    pg prompt "$root/prompt-policies/$t.safetensors" --episodes 10 --seed 1 \
      --out "$root/prompts/$t.safetensors" --force > "$root/prompts/$t.json"
  done
  pg train make-an-agent --dataset "$root/data" --out "$root/maa" --quiet > "$root/maa.json"
  ;;
report)
  prompts=(); for t in $SEEN $UNSEEN; do prompts+=("$root/prompts/$t.safetensors"); done
  pg report-agent "$root/maa" --prompts "${prompts[@]}" --n 20 --episodes 3 --noise 0,0.05,0.1 --bc 5 \
    --data-candidates 20 --seed 0 --out "$root/report" > "$root/report-summary.json"
  ;;
*) echo "stage: ars, data or report" >&2; exit 2 ;;
esac
