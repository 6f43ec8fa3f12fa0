#!/usr/bin/env bash
# Random vs AMN-policy (beta 0) vs AMN-feature (beta > 0) initialisation on one target game,
# same seeds and budget (FLAGFILE, default flags/transfer_cpu.flags), then each run's exported DQN and random
# play evaluated through their SavedModels, then Table 2 and the curves. Before any training, each AMN's
# --mode=rank_sources ranking (REPORT_DIR/rank_sources-<AMN name>.json); Table 2 puts its prediction
# beside what the runs showed.
# Usage: scripts/transfer_compare.sh GAME AMN_POLICY_PATH AMN_FEATURE_PATH [SEEDS...]
#   e.g. scripts/transfer_compare.sh Breakout saved_models/amn/policy/1 saved_models/amn/feature/1 0 1
# Env: JOBS (trainings at once, default 1: one DQN keeps 2 cores busy; give the number of
#   2-core slices you have), STEPS (any of "rank train evals report", default all four),
#   EVAL_FLAGS (--eval_episodes=30), EXTRA_FLAGS (training only), REPORT_FLAGS (e.g. --reach_score=250),
#   RANK_FLAGS (rank_sources only, e.g. --eval_episodes=4 --eval_max_steps=4500 for long games),
#   FLAGFILE (flags/transfer_cpu.flags; flags/transfer_fast.flags for the fast recipe), RUN_ROOT (runs), EXPORT_DIR (runs/exports), REPORT_DIR (docs/results/transfer-GAME), PYTHON.
# Each training's records (scripts/keep_records.sh) are kept in REPORT_DIR/runs/<run name>, and the
# report reads those, so Table 2 can be made again after the run directories are gone.
# Each run resumes if interrupted and an eval or ranking JSON already written is kept: rerun the same
# command. A run that fails stops the script after the others finish, with its log named.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/runs_lib.sh
python=${PYTHON:-.venv/bin/python}
game=$1 policy=$2 feature=$3
shift 3
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1)
read -r -a steps <<< "${STEPS:-rank train evals report}"
jobs=${JOBS:-1}
root=${RUN_ROOT:-runs}
report_dir=${REPORT_DIR:-docs/results/transfer-$game}
eval_flags=${EVAL_FLAGS:---eval_episodes=30}
runs=() inits=() names=()
for seed in "${seeds[@]}"; do
  for init in random "amn:$policy" "amn:$feature"; do
    label=$(basename "$(dirname "${init#amn:}")")
    [ "$init" = random ] && label=random
    runs+=("$root/transfer-$game-$label-seed$seed")
    inits+=("$init")
    names+=("$label-seed$seed")
  done
done
if [ "${names[1]}" = "${names[2]}" ] || [ "${names[1]}" = "${names[0]}" ]; then
  echo "transfer_compare: the policy and feature AMNs both give the label '${names[1]%-seed*}'" \
    "(from saved_models/amn/<label>/<version>); export them under different names" >&2
  exit 2
fi

train() {  # index -> one training run, its output also in <run dir>.log
  local i=$1 run_dir=${runs[$1]}
  trained_elsewhere "$run_dir" "$report_dir/${names[$i]}-eval.json" && return 0
  mkdir -p "$(dirname "$run_dir")"
  "$python" -m amn_tf.main --flagfile="${FLAGFILE:-flags/transfer_cpu.flags}" --game="$game" \
    --init="${inits[$i]}" --seed="${seeds[$((i / 3))]}" --run_dir="$run_dir" \
    --export_dir="${EXPORT_DIR:-runs/exports}" ${EXTRA_FLAGS:-} 2>&1 | tee -a "$run_dir.log"
  scripts/keep_records.sh "$run_dir" "$(kept "$run_dir")"
}

ranking() {  # AMN SavedModel path -> its rank_sources JSON
  echo "$report_dir/rank_sources-$(basename "$(dirname "$1")").json"
}

for step in "${steps[@]}"; do
  case $step in
    rank)
      mkdir -p "$report_dir"
      for amn in "$policy" "$feature"; do
        out=$(ranking "$amn")
        [ -f "$out" ] || "$python" -m amn_tf.main --mode=rank_sources --game="$game" --init="amn:$amn" \
          ${RANK_FLAGS:-} --output_json="$out"
      done ;;
    train)
      pids=() failed=()
      for i in "${!runs[@]}"; do  # at most $jobs at once; pids[i] trains runs[i]
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
        train "$i" &
        pids+=($!)
      done
      for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || failed+=("${runs[$i]}.log")
      done
      if [ ${#failed[@]} -gt 0 ]; then
        echo "transfer_compare: training failed, see ${failed[*]}; rerun the same command to resume" >&2
        exit 1
      fi ;;
    evals)
      mkdir -p "$report_dir"
      for i in "${!runs[@]}"; do  # the run directory stands for the SavedModel it exported
        out="$report_dir/${names[$i]}-eval.json"
        [ -f "$out" ] || "$python" -m amn_tf.main --mode=eval --saved_model="${runs[$i]}" \
          $eval_flags --output_json="$out"
      done
      out="$report_dir/random-play-eval.json"
      [ -f "$out" ] || "$python" -m amn_tf.main --mode=eval --random_policy --game="$game" \
        $eval_flags --output_json="$out" ;;
    report)
      evals=() rankings=() records=()
      for run_dir in "${runs[@]}"; do
        [ -d "$(kept "$run_dir")" ] && records+=("$(kept "$run_dir")")
      done
      for name in "${names[@]}" random-play; do
        [ -f "$report_dir/$name-eval.json" ] && evals+=("$report_dir/$name-eval.json")
      done
      for amn in "$policy" "$feature"; do
        [ -f "$(ranking "$amn")" ] && rankings+=("$(ranking "$amn")")
      done
      "$python" -m amn_tf.main --mode=report --report_runs="$(IFS=,; echo "${records[*]}")" \
        --report_dir="$report_dir" ${evals:+--report_evals="$(IFS=,; echo "${evals[*]}")"} \
        ${rankings:+--report_rankings="$(IFS=,; echo "${rankings[*]}")"} ${REPORT_FLAGS:-} ;;
    *)
      echo "transfer_compare: unknown step '$step' in STEPS (use rank, train, evals, report)" >&2
      exit 2 ;;
  esac
done
