#!/usr/bin/env bash
# Random vs AMN-policy (beta 0) vs AMN-feature (beta > 0) initialisation on one target game,
# same seeds and budget (flags/transfer_cpu.flags), then Table 2 and the curves.
# Usage: scripts/transfer_compare.sh GAME AMN_POLICY_PATH AMN_FEATURE_PATH [SEEDS...]
#   e.g. scripts/transfer_compare.sh Breakout saved_models/amn/policy/1 saved_models/amn/feature/1 0 1
# Each run resumes if interrupted; rerun the same command.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
game=$1 policy=$2 feature=$3
shift 3
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1)
runs=()
for seed in "${seeds[@]}"; do
  for init in random "amn:$policy" "amn:$feature"; do
    label=$(basename "$(dirname "${init#amn:}")")
    [ "$init" = random ] && label=random
    run_dir="runs/transfer-$game-$label-seed$seed"
    "$python" -m amn_tf.main --flagfile=flags/transfer_cpu.flags --game="$game" --init="$init" \
      --seed="$seed" --run_dir="$run_dir" --export_dir="${EXPORT_DIR:-runs/exports}" ${EXTRA_FLAGS:-}
    runs+=("$run_dir")
  done
done
"$python" -m amn_tf.main --mode=report --report_runs="$(IFS=,; echo "${runs[*]}")" \
  --report_dir="${REPORT_DIR:-docs/results/transfer-$game}"
