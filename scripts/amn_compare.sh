#!/usr/bin/env bash
# Table 1 at CPU scale: the longer AMN run (flags/amn_cpu.flags) on the shipped experts and
# the MDQN / MCDQN baselines (flags/multitask_cpu.flags, same per-game budget) on the same
# games, then --mode=report puts them side by side with the experts.
# Usage: scripts/amn_compare.sh [amn|mdqn|mcdqn|evals|report ...]   (default: all, in order)
# evals: 30 test episodes per game through each exported SavedModel (newest version), written
# to $REPORT_DIR/<name>-eval.json (kept if present); report then adds Table 1 through the
# SavedModels beside the shipped experts' and random play's evaluations (docs/results/experts).
# Every run resumes if interrupted: rerun the same command. Env: RUN_ROOT (runs),
# EXPORT_DIR (runs/exports), REPORT_DIR (docs/results/table1), PYTHON, EXTRA_FLAGS,
# GAMES (comma list for the baselines; default: the games under saved_models/experts).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
root=${RUN_ROOT:-runs}
games=${GAMES:-$(ls saved_models/experts | paste -sd, -)}
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(amn mdqn mcdqn evals report)
exports=${EXPORT_DIR:-runs/exports}
report_dir=${REPORT_DIR:-docs/results/table1}
for step in "${steps[@]}"; do
  case $step in
    amn)
      "$python" -m amn_tf.main --flagfile=flags/amn_cpu.flags --run_dir="$root/amn-cpu" \
        --amn_name=amn-cpu --export_dir="${EXPORT_DIR:-runs/exports}" ${EXTRA_FLAGS:-} ;;
    mdqn|mcdqn)
      "$python" -m amn_tf.main --flagfile=flags/multitask_cpu.flags --multitask_network="$step" \
        --games="$games" --run_dir="$root/$step-cpu" --amn_name="$step-cpu" \
        --export_dir="${EXPORT_DIR:-runs/exports}" ${EXTRA_FLAGS:-} ;;
    evals)
      mkdir -p "$report_dir"
      for model in amn/amn-cpu multitask_dqn/mdqn-cpu multitask_dqn/mcdqn-cpu; do
        version=$(ls "$exports/$model" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1 || true)
        out="$report_dir/$(basename "$model")-eval.json"
        if [ -z "$version" ]; then echo "no export under $exports/$model yet: skipped"; continue; fi
        [ -f "$out" ] || "$python" -m amn_tf.main --mode=eval \
          --saved_model="$exports/$model/$version" --eval_episodes=30 --output_json="$out"
      done ;;
    report)
      runs=()
      for name in amn mdqn mcdqn; do [ -d "$root/$name-cpu" ] && runs+=("$root/$name-cpu"); done
      evals=()
      for game in ${games//,/ }; do
        for who in expert random; do
          [ -f "docs/results/experts/$game-$who.json" ] && evals+=("docs/results/experts/$game-$who.json")
        done
      done
      for name in amn mdqn mcdqn; do
        [ -f "$report_dir/$name-cpu-eval.json" ] && evals+=("$report_dir/$name-cpu-eval.json")
      done
      "$python" -m amn_tf.main --mode=report --report_runs="$(IFS=,; echo "${runs[*]}")" \
        --report_evals="$(IFS=,; echo "${evals[*]}")" --report_dir="$report_dir" ;;
    *) echo "unknown step $step: use amn, mdqn, mcdqn, evals or report" >&2; exit 2 ;;
  esac
done
