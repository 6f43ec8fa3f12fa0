#!/usr/bin/env bash
# Expert recipes compared on one game: each variant (a flagfile and flags on top of it) trained
# with the same seeds and budget, each run's exported DQN evaluated through its SavedModel, then
# the report's recipe table (what differs from the first variant, frames and learner updates to
# the first test play at or above each REACH score, the test play at the frames every run
# reached, the SavedModel's score) and recipe_curves.png.
# Usage: scripts/recipe_compare.sh GAME [SEEDS...]          (default seed: 0)
#   e.g. REACH=12,15 scripts/recipe_compare.sh Pong 0 1
# Env: VARIANTS (';'-separated "name=FLAGFILE [flags...]"; default below: the fast recipe and one
#   change at a time back towards flags/expert_cpu.flags, the replay ratio doubled, a dueling
#   head, float32 compute (--precision=auto picks mixed bfloat16 on CPUs with bf16 instructions),
#   then flags/expert_cpu.flags itself), BUDGET (agent
#   steps per run, default 600000 = 2.4M frames), REACH (report reach scores, e.g. 12,15),
#   STEPS (any of "train evals report", default all), EXTRA_RUNS (comma list of finished dqn runs
#   of the same game to include, e.g. a longer seed of one recipe: grouped by their flags),
#   EVAL_FLAGS (--eval_episodes=30), EXTRA_FLAGS (training only), RUN_ROOT (runs/recipes),
#   EXPORT_DIR (runs/recipes/exports), REPORT_DIR (docs/results/experts/recipes-GAME), PYTHON.
# Every run resumes if interrupted and an eval JSON already written is kept: rerun the command.
# Each run's records (scripts/keep_records.sh; EXTRA_RUNS' at the report) are kept in
# REPORT_DIR/runs/<run name>, and the report reads those, so the table can be made again after
# the run directories are gone.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/runs_lib.sh
python=${PYTHON:-.venv/bin/python}
game=${1:?usage: scripts/recipe_compare.sh GAME [SEEDS...]}
shift
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0)
read -r -a steps <<< "${STEPS:-train evals report}"
root=${RUN_ROOT:-runs/recipes}
exports=${EXPORT_DIR:-runs/recipes/exports}
report_dir=${REPORT_DIR:-docs/results/experts/recipes-$game}
budget=${BUDGET:-600000}
default_variants="fast=flags/expert_fast.flags
fast-nstep1=flags/expert_fast.flags --n_step=1
fast-target8000=flags/expert_fast.flags --target_update_period=8000
fast-eps250k=flags/expert_fast.flags --epsilon_decay_steps=250000
fast-update2=flags/expert_fast.flags --update_period=2
fast-dueling=flags/expert_fast.flags --dueling
fast-float32=flags/expert_fast.flags --precision=float32
cpu=flags/expert_cpu.flags"
IFS=';' read -r -a variants <<< "${VARIANTS:-${default_variants//$'\n'/;}}"

names=() flagfiles=() extras=()
for variant in "${variants[@]}"; do
  variant=$(echo "$variant" | xargs)  # trim
  [ -n "$variant" ] || continue
  name=${variant%%=*} rest=${variant#*=}
  flagfile=${rest%% *} extra=""
  [ "$rest" = "$flagfile" ] || extra=${rest#* }
  if [ "$name" = "$variant" ] || [ ! -f "$flagfile" ]; then
    echo "recipe_compare: variant '$variant' is not NAME=FLAGFILE [flags...] with an existing flagfile" >&2
    exit 2
  fi
  names+=("$name") flagfiles+=("$flagfile") extras+=("$extra")
done

runs=() evals=()
for seed in "${seeds[@]}"; do
  for i in "${!names[@]}"; do
    runs+=("$root/$game-${names[$i]}-seed$seed")
    evals+=("$report_dir/$game-${names[$i]}-seed$seed-eval.json")
  done
done

extra_runs=()
[ -z "${EXTRA_RUNS:-}" ] || IFS=',' read -r -a extra_runs <<< "$EXTRA_RUNS"
for extra_run in "${extra_runs[@]}"; do  # evaluated and reported, never trained here
  runs+=("$extra_run")
  evals+=("$report_dir/$(basename "$extra_run")-eval.json")
done

for step in "${steps[@]}"; do
  case $step in
    train)
      for seed in "${seeds[@]}"; do
        for i in "${!names[@]}"; do
          trained_elsewhere "$root/$game-${names[$i]}-seed$seed" "$report_dir/$game-${names[$i]}-seed$seed-eval.json" && continue
          # shellcheck disable=SC2086  # the variant's flags split on spaces
          "$python" -m amn_tf.main --flagfile="${flagfiles[$i]}" ${extras[$i]} --game="$game" \
            --seed="$seed" --training_steps="$budget" --run_dir="$root/$game-${names[$i]}-seed$seed" \
            --export_dir="$exports" ${EXTRA_FLAGS:-}
          scripts/keep_records.sh "$root/$game-${names[$i]}-seed$seed" "$(kept "$game-${names[$i]}-seed$seed")"
        done
      done ;;
    evals)
      mkdir -p "$report_dir"
      for index in "${!runs[@]}"; do
        [ -f "${evals[$index]}" ] && continue
        # shellcheck disable=SC2086
        "$python" -m amn_tf.main --mode=eval --saved_model="${runs[$index]}" ${EVAL_FLAGS:---eval_episodes=30} \
          --output_json="${evals[$index]}"
      done ;;
    report)
      present=() found=()
      for extra_run in "${extra_runs[@]}"; do
        [ ! -d "$extra_run" ] || scripts/keep_records.sh "$extra_run" "$(kept "$extra_run")"
      done
      for index in "${!runs[@]}"; do
        [ -d "$(kept "${runs[$index]}")" ] && present+=("$(kept "${runs[$index]}")")
        [ -f "${evals[$index]}" ] && found+=("${evals[$index]}")
      done
      evals_flag=() reach_flag=()
      [ ${#found[@]} -eq 0 ] || evals_flag=(--report_evals="$(IFS=,; echo "${found[*]}")")
      [ -z "${REACH:-}" ] || reach_flag=(--report_reach_scores="$REACH")
      "$python" -m amn_tf.main --mode=report --report_runs="$(IFS=,; echo "${present[*]}")" \
        "${evals_flag[@]}" "${reach_flag[@]}" --report_dir="$report_dir" ;;
    *) echo "unknown step $step: use train, evals or report" >&2; exit 2 ;;
  esac
done
