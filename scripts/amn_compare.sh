#!/usr/bin/env bash
# Table 1 at CPU scale: the longer AMN run (flags/amn_cpu.flags) on the shipped experts and
# the MDQN / MCDQN baselines (flags/multitask_cpu.flags, same per-game budget) on the same
# games, then --mode=report puts them side by side with the experts.
# Usage: scripts/amn_compare.sh [amn|mdqn|mcdqn|report ...]   (default: all four, in order)
# Every run resumes if interrupted: rerun the same command. Env: RUN_ROOT (runs),
# EXPORT_DIR (runs/exports), REPORT_DIR (docs/results/table1), PYTHON, EXTRA_FLAGS,
# GAMES (comma list for the baselines; default: the games under saved_models/experts).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
root=${RUN_ROOT:-runs}
games=${GAMES:-$(ls saved_models/experts | paste -sd, -)}
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(amn mdqn mcdqn report)
for step in "${steps[@]}"; do
  case $step in
    amn)
      "$python" -m amn_tf.main --flagfile=flags/amn_cpu.flags --run_dir="$root/amn-cpu" \
        --amn_name=amn-cpu --export_dir="${EXPORT_DIR:-runs/exports}" ${EXTRA_FLAGS:-} ;;
    mdqn|mcdqn)
      "$python" -m amn_tf.main --flagfile=flags/multitask_cpu.flags --multitask_network="$step" \
        --games="$games" --run_dir="$root/$step-cpu" --amn_name="$step-cpu" \
        --export_dir="${EXPORT_DIR:-runs/exports}" ${EXTRA_FLAGS:-} ;;
    report)
      runs=()
      for name in amn mdqn mcdqn; do [ -d "$root/$name-cpu" ] && runs+=("$root/$name-cpu"); done
      "$python" -m amn_tf.main --mode=report --report_runs="$(IFS=,; echo "${runs[*]}")" \
        --report_dir="${REPORT_DIR:-docs/results/table1}" ;;
    *) echo "unknown step $step: use amn, mdqn, mcdqn or report" >&2; exit 2 ;;
  esac
done
