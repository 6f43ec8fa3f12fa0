#!/usr/bin/env bash
# Keeps a run directory's records: the small files the report reads (run.json, flags.json,
# flags_history.jsonl, experts.json, init.json, eval.jsonl), without checkpoints, replay or TensorBoard
# logs, so that a published table or curve can be made again from git after the run directory
# is gone (run directories do not survive a move to a new machine). The comparison scripts call
# it after each training and report from the kept records. Absolute paths in them (a --run_dir,
# --export_dir or --init given absolute) are kept named portably, as exports name them
# (rundirs.portable_record): relative to the project when inside it, else by name.
# Usage: scripts/keep_records.sh RUN_DIR DEST_DIR   (env PYTHON: .venv/bin/python)
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
  "${PYTHON:-.venv/bin/python}" - "$dest/.$name.tmp" <<'PY'
import json, sys
from amn_tf import rundirs
path = sys.argv[1]
def portable(line: str) -> str:  # as written (jsonl, checkpoints.write_json_atomically), if nothing moves
    record = json.loads(line)
    if rundirs.portable_record(record) == record:
        return line
    indent = 2 if "\n" in line.strip() else None
    return json.dumps(rundirs.portable_record(record), indent=indent, sort_keys=indent is not None) + line[len(line.rstrip()):]
with open(path) as handle:
    text = handle.read()
lines = text.splitlines(keepends=True) if path.endswith(".jsonl.tmp") else [text]
with open(path, "w") as handle:
    handle.write("".join(portable(line) if line.strip() else line for line in lines))
PY
  mv "$dest/.$name.tmp" "$dest/$name"
done
