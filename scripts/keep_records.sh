#!/usr/bin/env bash
# Keeps a run directory's records: the small files the report reads (run.json, flags.json,
# flags_history.jsonl, experts.json, init.json, eval.jsonl), without checkpoints, replay or TensorBoard
# logs, so that a published table or curve can be made again from git after the run directory
# is gone (run directories do not survive a move to a new machine). The comparison scripts call
# it after each training and report from the kept records.
# Usage: scripts/keep_records.sh RUN_DIR DEST_DIR
set -euo pipefail
src=${1:?usage: scripts/keep_records.sh RUN_DIR DEST_DIR} dest=${2:?usage: scripts/keep_records.sh RUN_DIR DEST_DIR}
if [ ! -f "$src/run.json" ]; then
  echo "keep_records: $src is not a run directory (no run.json); give the --run_dir of a training" >&2
  exit 2
fi
mkdir -p "$dest"
for name in run.json flags.json flags_history.jsonl experts.json init.json eval.jsonl; do
  [ -f "$src/$name" ] || continue
  cp "$src/$name" "$dest/.$name.tmp"  # whole or not at all: a copy cut short never replaces a record
  mv "$dest/.$name.tmp" "$dest/$name"
done
