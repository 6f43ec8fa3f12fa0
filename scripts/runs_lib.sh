# Sourced by the comparison scripts (amn_compare.sh, amn_sweep.sh, transfer_compare.sh, recipe_compare.sh),
# each of which sets report_dir.

# kept RUN_DIR: where that run's records are kept (scripts/keep_records.sh) and reported from.
kept() {
  echo "$report_dir/runs/$(basename "$1")"
}

# trained_elsewhere RUN_DIR EVAL_JSON: true (and says so) when the run directory is absent but
# the run's SavedModel was already evaluated: the run finished on another machine and its kept
# records and eval JSON stand for it. Training it again would start from scratch and put a new
# curve beside the old evaluation.
trained_elsewhere() {
  if [ ! -d "$1" ] && [ -f "$2" ]; then
    echo "$(basename "$1"): evaluated already ($2) and its run directory is not here (trained on" \
      "another machine): not trained again; remove that eval JSON to train it anew"
    return 0
  fi
  return 1
}

# newest_version DIR: the highest numbered SavedModel version under DIR (empty when none).
newest_version() {
  ls "$1" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1 || true
}
