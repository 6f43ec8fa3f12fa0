"""scripts/keep_records.sh: a run's small records kept whole, with absolute paths named portably."""

import json
import os
import subprocess
import sys

from amn_tf import checkpoints, jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def keep(src, dest):
    return subprocess.run(["bash", "scripts/keep_records.sh", str(src), str(dest)], cwd=ROOT,
                          env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True)


def test_kept_records_name_absolute_paths_portably_and_keep_the_rest_byte_for_byte(tmp_path):
    run = tmp_path / "machine" / "runs" / "transfer-Breakout-seed1"
    run.mkdir(parents=True)
    checkpoints.write_json_atomically(str(run / "run.json"), {"game": "Breakout", "mode": "transfer"})
    flags = {"run_dir": str(run), "export_dir": str(tmp_path / "exports"), "seed": 1,
             "init": "amn:saved_models/amn/amn-feature/1"}
    checkpoints.write_json_atomically(str(run / "flags.json"), flags)
    checkpoints.write_json_atomically(str(run / "init.json"), {"init": "amn", "source": str(tmp_path / "x" / "amn" / "f" / "3")})
    jsonl.append(str(run / "flags_history.jsonl"), {"from_step": 0, "flags": flags})
    jsonl.append(str(run / "eval.jsonl"), {"step": 50, "mean": 1.5})
    (run / "replay.npz").write_bytes(b"not kept")
    result = keep(run, tmp_path / "kept")
    assert result.returncode == 0, result.stderr
    kept = tmp_path / "kept"
    assert sorted(os.listdir(kept)) == ["eval.jsonl", "flags.json", "flags_history.jsonl", "init.json", "run.json"]
    for unchanged in ("run.json", "eval.jsonl"):
        assert (kept / unchanged).read_bytes() == (run / unchanged).read_bytes()
    portable = dict(flags, run_dir="transfer-Breakout-seed1", export_dir="exports")
    assert (kept / "flags.json").read_text() == json.dumps(portable, indent=2, sort_keys=True)
    assert json.loads((kept / "init.json").read_text())["source"] == os.path.join("amn", "f", "3")
    history = (kept / "flags_history.jsonl").read_text()
    assert history == json.dumps({"from_step": 0, "flags": portable}) + "\n"  # one line, its key order


def test_keeping_what_is_not_a_run_directory_says_so(tmp_path):
    result = keep(tmp_path, tmp_path / "kept")
    assert result.returncode == 2 and "not a run directory" in result.stderr
    assert not (tmp_path / "kept").exists()
