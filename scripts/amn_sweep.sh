#!/usr/bin/env bash
# Distillation per minute: the main job's AMN (`--mode=amn` defaults, the shipped experts) with
# one setting changed at a time, each trained for the same training time, every seed in SEEDS
# (all settings for the first seed, then the next seed); then amn_per_minute.md
# (--report_per_minute: games at >= 80% of the expert and the mean capped random-relative score
# per setting) beside Table 1 and curves.
# Two budgets (BUDGET):
#   steps (default): the `rates` step measures, alone on the machine, what MINUTES of training buy
#     each setting (benchmarks/amn_rate.py: a PROBE_MINUTES probe, its frames and steady frames/s,
#     into RATES); `train` then gives each setting that many agent steps (--amn_steps), which
#     learns the same beside anything else, so the trainings can share the machine (a background
#     queue, tests); the report reads each run's minutes back through its setting's rate.
#   minutes: --train_minutes=MINUTES (the loop's wall clock less its test plays): only fair alone
#     on the machine, trainings included; run nothing else beside it (a SIGSTOPped process is fine).
# Run `rates` alone (pause any training with SIGSTOP): its figures are the budget of every run
# (the learning-rate settings take the reference's rate: same FLOPs per update, no probe).
# Each training's records (scripts/keep_records.sh) are kept in REPORT_DIR/runs/<name>.
# Usage: scripts/amn_sweep.sh [rates|train|evals|report ...]   (default: rates train report)
# A finished run is skipped when the command is run again, and a setting whose rate is in RATES
# is not measured again (remove its entry, or the file, to measure anew). A run interrupted before
# its end starts over: its run directory is removed first (no periodic checkpoint, but a stop
# signal leaves one, and a resume would refill the replay and learn from a different history than
# an uninterrupted run; each run is only MINUTES long).
# Env: SEEDS ("0 1"), MINUTES (10), BUDGET (steps), PROBE_MINUTES (3; expert-early is probed for
# MINUTES: its experts play inline for its first 20,000 steps, at another speed), RATES
# (REPORT_DIR/rates.json), EVAL_PERIOD (agent steps per game between test plays, 25000),
# SETTINGS (names from the list below, space-separated; default all), RUN_ROOT (runs/amn-sweep),
# EXPORT_DIR (runs/exports), REPORT_DIR (docs/results/amn-per-minute), PYTHON, EXTRA_FLAGS
# (every training and probe), EVAL_FLAGS (--eval_episodes=30, the evals step: every setting's SavedModels).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/runs_lib.sh
python=${PYTHON:-.venv/bin/python}
root=${RUN_ROOT:-runs/amn-sweep}
exports=${EXPORT_DIR:-runs/exports}
report_dir=${REPORT_DIR:-docs/results/amn-per-minute}
minutes=${MINUTES:-10}
budget=${BUDGET:-steps}
rates=${RATES:-$report_dir/rates.json}
probe_minutes=${PROBE_MINUTES:-3}
case $budget in steps|minutes) ;; *) echo "BUDGET=$budget: use steps or minutes" >&2; exit 2 ;; esac
eval_period=${EVAL_PERIOD:-25000}
read -r -a seeds <<< "${SEEDS:-0 1}"
# The reference is the defaults (learning rate 1e-3 since 2026-12-06; runs kept from before then
# record 2.5e-4, the lr2.5e-4 setting here, in their flags.json, and the report labels each run by
# its flags, not its name).
# Since 2026-12-07 the AMN plays in a thread beside its learner (--amn_acting=auto), except where
# an expert plays: expert-actor plays inline throughout (about 9% fewer frames per minute), and
# expert-early inline for its 20,000 expert steps, then in the thread; the per-minute table charges
# them that, as a user running those flags would pay it.
declare -A setting_flags=(
  [reference]=""
  [lr2.5e-4]="--amn_learning_rate=0.00025"
  [lr5e-4]="--amn_learning_rate=0.0005"
  [decay]="--amn_learning_rate_end=0.0001"
  [batch32]="--batch_per_game=32"
  [period2]="--update_period=2"
  [envs8]="--num_envs=8"
  [expert-actor]="--amn_actor=expert"
  [expert-early]="--amn_expert_steps=20000"
)
# Settings that change nothing the speed depends on (the learning rate and its schedule: the same
# FLOPs per update) take the reference's rate in the rates step instead of a probe of their own.
declare -A same_rate_as=([lr2.5e-4]=reference [lr5e-4]=reference [decay]=reference)
read -r -a settings <<< "${SETTINGS:-reference lr2.5e-4 lr5e-4 decay batch32 period2 envs8 expert-actor expert-early}"
for name in "${settings[@]}"; do
  [ -n "${setting_flags[$name]+set}" ] || { echo "unknown setting $name: use ${!setting_flags[*]}" >&2; exit 2; }
done
steps=("$@")
if [ ${#steps[@]} -eq 0 ]; then
  steps=(train report)
  [ "$budget" = minutes ] || steps=(rates "${steps[@]}")
fi
rates_flag=()
[ "$budget" = minutes ] || rates_flag=(--report_rates="$rates")

for step in "${steps[@]}"; do
  case $step in
    rates)
      if [ "$budget" = minutes ]; then echo "BUDGET=minutes trains by the clock: there are no rates to measure" >&2; exit 2; fi
      for name in "${settings[@]}"; do
        if [ -f "$rates" ] && "$python" benchmarks/amn_rate.py --name="$name" --rates_json="$rates" --measured; then
          echo "$name: rate measured already ($rates)"; continue
        fi
        probe=(--probe_minutes="$probe_minutes")
        [ "$name" != expert-early ] || probe=(--probe_minutes="$minutes")  # its speed changes part-way: the whole budget
        [ -z "${same_rate_as[$name]:-}" ] || probe=(--same_as="${same_rate_as[$name]}")
        # shellcheck disable=SC2086  # the setting's flags are words
        "$python" benchmarks/amn_rate.py --name="$name" --rates_json="$rates" "${probe[@]}" \
          -- ${setting_flags[$name]} ${EXTRA_FLAGS:-}
      done ;;
    train)
      for seed in "${seeds[@]}"; do
        for name in "${settings[@]}"; do
          run="$name-seed$seed"
          trained_elsewhere "$root/$run" "$report_dir/$run-eval.json" && continue
          if [ -d "$root/$run" ] && ! grep -qs '"finished": true' "$root/$run"/checkpoints/*/state.json; then
            echo "$run: interrupted before its end: starting over (a resume would refill its replay and learn from another history)"
            rm -rf "${root:?}/$run"
          fi
          if [ "$budget" = steps ]; then
            amn_steps=$("$python" benchmarks/amn_rate.py --name="$name" --rates_json="$rates" --steps_for="$minutes")
            run_budget=(--amn_steps="$amn_steps")
          else
            run_budget=(--train_minutes="$minutes" --amn_steps=2000000)
          fi
          # shellcheck disable=SC2086  # the setting's flags are words
          "$python" -m amn_tf.main --mode=amn "${run_budget[@]}" \
            --checkpoint_period=100000000 --amn_eval_period="$eval_period" --seed="$seed" --run_dir="$root/$run" --amn_name="$run" \
            --export_dir="$exports" ${setting_flags[$name]} ${EXTRA_FLAGS:-}
          scripts/keep_records.sh "$root/$run" "$(kept "$run")"
        done
      done ;;
    evals)
      mkdir -p "$report_dir"
      for seed in "${seeds[@]}"; do
        for name in "${settings[@]}"; do
          run="$name-seed$seed" out="$report_dir/$name-seed$seed-eval.json"
          version=$(newest_version "$exports/amn/$run")
          if [ -z "$version" ]; then echo "no export under $exports/amn/$run yet: skipped"; continue; fi
          [ -f "$out" ] || "$python" -m amn_tf.main --mode=eval --saved_model="$exports/amn/$run/$version" \
            ${EVAL_FLAGS:---eval_episodes=30} --output_json="$out"
        done
      done ;;
    report)
      runs=() evals=()
      for name in "${settings[@]}"; do
        for seed in "${seeds[@]}"; do
          [ -d "$(kept "$name-seed$seed")" ] && runs+=("$(kept "$name-seed$seed")")
          [ -f "$report_dir/$name-seed$seed-eval.json" ] && evals+=("$report_dir/$name-seed$seed-eval.json")
        done
      done
      [ ${#runs[@]} -gt 0 ] || { echo "no kept runs in $report_dir/runs yet: train first" >&2; exit 2; }
      "$python" -m amn_tf.main --mode=report --report_runs="$(IFS=,; echo "${runs[*]}")" \
        ${evals[0]:+--report_evals="$(IFS=,; echo "${evals[*]}")"} --report_per_minute \
        "${rates_flag[@]}" \
        --report_dir="$report_dir" ;;
    *) echo "unknown step $step: use rates, train, evals or report" >&2; exit 2 ;;
  esac
done
