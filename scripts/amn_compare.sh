#!/usr/bin/env bash
# Table 1 at CPU scale on the shipped experts: small AMNs (flags/amn_table1.flags, --tau=auto)
# with policy regression only (beta 0) and with feature regression (beta 0.01), each with
# every seed in SEEDS; one AMN at a single tau (TAU_COMPARE, beta 0, first seed) beside auto;
# the MDQN / MCDQN baselines at the same per-game budget; 30 test episodes per game through
# every exported SavedModel; then Table 1 (per model and averaged over seeds) and the curves.
# Each training's records (scripts/keep_records.sh) are kept in REPORT_DIR/runs/<name>, and the
# report reads those, so Table 1 can be made again after the run directories are gone.
# Usage: scripts/amn_compare.sh [amn|tau|mdqn|mcdqn|evals|report ...]   (default: all, in order)
# Every run resumes if interrupted and an eval JSON already written is kept: rerun the same
# command. Env: SEEDS ("0 1"), BETAS ("0 0.01"), TAU_COMPARE (0.1), RUN_ROOT (runs),
# EXPORT_DIR (runs/exports), REPORT_DIR (docs/results/table1), PYTHON, EXTRA_FLAGS (every
# training), EVAL_FLAGS (--eval_episodes=30), GAMES (comma list; default: the games under
# saved_models/experts).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/runs_lib.sh
python=${PYTHON:-.venv/bin/python}
root=${RUN_ROOT:-runs}
exports=${EXPORT_DIR:-runs/exports}
report_dir=${REPORT_DIR:-docs/results/table1}
games=${GAMES:-$(ls saved_models/experts | paste -sd, -)}
read -r -a seeds <<< "${SEEDS:-0 1}"
read -r -a betas <<< "${BETAS:-0 0.01}"
tau=${TAU_COMPARE:-0.1}
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(amn tau mdqn mcdqn evals report)
budget=$(grep -E '^--amn_steps=' flags/amn_table1.flags | cut -d= -f2)

names=()  # every model this comparison trains: <kind dir>/<name>
for beta in "${betas[@]}"; do
  for seed in "${seeds[@]}"; do names+=("amn/amn-beta$beta-seed$seed"); done
done
names+=("amn/amn-tau$tau-beta0-seed${seeds[0]}" multitask_dqn/mdqn multitask_dqn/mcdqn)

amn() {  # name, then flags
  local name=$1
  shift
  trained_elsewhere "$root/$name" "$report_dir/$name-eval.json" && return 0
  "$python" -m amn_tf.main --flagfile=flags/amn_table1.flags --games="$games" "$@" \
    --run_dir="$root/$name" --amn_name="$name" --export_dir="$exports" ${EXTRA_FLAGS:-}
  scripts/keep_records.sh "$root/$name" "$(kept "$name")"
}

for step in "${steps[@]}"; do
  case $step in
    amn)
      for beta in "${betas[@]}"; do
        for seed in "${seeds[@]}"; do amn "amn-beta$beta-seed$seed" --beta="$beta" --seed="$seed"; done
      done ;;
    tau)
      amn "amn-tau$tau-beta0-seed${seeds[0]}" --tau="$tau" --beta=0 --seed="${seeds[0]}" ;;
    mdqn|mcdqn)
      trained_elsewhere "$root/$step" "$report_dir/$step-eval.json" && continue
      "$python" -m amn_tf.main --flagfile=flags/multitask_cpu.flags --multitask_network="$step" \
        --training_steps="$budget" --games="$games" --seed="${seeds[0]}" --run_dir="$root/$step" \
        --amn_name="$step" --export_dir="$exports" ${EXTRA_FLAGS:-}
      scripts/keep_records.sh "$root/$step" "$(kept "$step")" ;;
    evals)
      mkdir -p "$report_dir"
      for model in "${names[@]}"; do
        version=$(newest_version "$exports/$model")
        out="$report_dir/$(basename "$model")-eval.json"
        if [ -z "$version" ]; then echo "no export under $exports/$model yet: skipped"; continue; fi
        [ -f "$out" ] || "$python" -m amn_tf.main --mode=eval \
          --saved_model="$exports/$model/$version" ${EVAL_FLAGS:---eval_episodes=30} --output_json="$out"
      done ;;
    report)
      runs=() evals=()
      for model in "${names[@]}"; do
        [ -d "$(kept "$model")" ] && runs+=("$(kept "$model")")
        out="$report_dir/$(basename "$model")-eval.json"
        [ -f "$out" ] && evals+=("$out")
      done
      for game in ${games//,/ }; do
        for who in expert random; do
          [ -f "docs/results/experts/$game-$who.json" ] && evals+=("docs/results/experts/$game-$who.json")
        done
      done
      "$python" -m amn_tf.main --mode=report --report_runs="$(IFS=,; echo "${runs[*]}")" \
        --report_evals="$(IFS=,; echo "${evals[*]}")" --report_dir="$report_dir" ;;
    *) echo "unknown step $step: use amn, tau, mdqn, mcdqn, evals or report" >&2; exit 2 ;;
  esac
done
