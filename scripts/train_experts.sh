#!/usr/bin/env bash
# Trains (or resumes) the shipped experts one after another with ${FLAGFILE:-flags/expert_cpu.flags}
# (FLAGFILE=flags/expert_fast.flags: the fast recipe that trained Pong).
# Usage: scripts/train_experts.sh [Game ...]   (default: the shipped four, Boxing Seaquest DemonAttack CrazyClimber)
# Run dirs: ${RUN_ROOT:-runs}/experts/<Game>; rerunning resumes each from its last checkpoint.
# Exports go to ${EXPORT_DIR:-runs/exports}; copy an expert that passes the bar into
# saved_models/experts/<Game>/1 (see saved_models/README.md). A game still under the bar
# at the recipe's 3M frames trains further with a larger budget, e.g.
# EXTRA_FLAGS="--training_steps=1750000" scripts/train_experts.sh Pong (Pong: -16.0 at 4.8M).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
games=("$@")
[ ${#games[@]} -gt 0 ] || games=(Boxing Seaquest DemonAttack CrazyClimber)
for game in "${games[@]}"; do
  "$python" -m amn_tf.main --flagfile="${FLAGFILE:-flags/expert_cpu.flags}" --game="$game" \
    --run_dir="${RUN_ROOT:-runs}/experts/$game" --export_dir="${EXPORT_DIR:-runs/exports}" \
    ${EXTRA_FLAGS:-}
done
