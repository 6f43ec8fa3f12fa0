"""scripts/recipe_compare.sh end to end at tiny budgets: two recipes of one game trained, their
SavedModels evaluated, the report's recipe table with what differs and each SavedModel's score,
a rerun that trains and evaluates nothing again, and the table made again from the kept records
once the run directories are gone."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO_ROOT as ROOT

pytestmark = pytest.mark.slow  # every test runs scripts/recipe_compare.sh


def _env(tmp_path, **extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHON=sys.executable,
                RUN_ROOT=str(tmp_path / "runs"), EXPORT_DIR=str(tmp_path / "exports"),
                REPORT_DIR=str(tmp_path / "report"), BUDGET="600", REACH="-100,100",
                EVAL_FLAGS="--eval_episodes=1 --eval_envs=1 --eval_max_steps=50", **extra)


def test_recipe_compare_trains_evaluates_and_tables_each_recipe(tmp_path):
    env = _env(tmp_path, VARIANTS="a=flags/smoke.flags; b=flags/smoke.flags --n_step=2")
    command = ["bash", "scripts/recipe_compare.sh", "Pong", "0"]
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    for name in ("a", "b"):
        payload = json.loads((tmp_path / "report" / f"Pong-{name}-seed0-eval.json").read_text())
        # named by the run's name: the run directory lies outside the project (rundirs.portable_path)
        assert payload["run_dir"] == f"Pong-{name}-seed0"
        assert payload["frames_trained"] == 2400 and payload["results"][0]["episodes"] == 1
    table = (tmp_path / "report" / "experts.md").read_text().split("# Recipes compared")[1]
    assert "reference: Pong-a" in table and "Reach scores: -100, 100 (given" in table
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| Pong-")}
    assert set(rows) == {"Pong-a", "Pong-b"}
    assert "| reference |" in rows["Pong-a"] and "| n_step 2 (1) |" in rows["Pong-b"]
    assert all(row.rstrip().endswith("episodes at 2,400 |") for row in rows.values())
    assert (tmp_path / "report" / "recipe_curves.png").read_bytes()[:4] == b"\x89PNG"
    written = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "report").glob("*-eval.json")}
    # A run trained elsewhere with recipe a's flags (another seed) joins recipe a as EXTRA_RUNS:
    # evaluated and reported, never trained by the script.
    extra = tmp_path / "elsewhere" / "a-seed1"
    trained = subprocess.run([sys.executable, "-m", "amn_tf.main", "--flagfile=flags/smoke.flags",
                              "--seed=1", f"--run_dir={extra}", f"--export_dir={tmp_path / 'elsewhere'}"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    again = subprocess.run(command, cwd=ROOT, env=dict(env, EXTRA_RUNS=str(extra)),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("run already finished") == 2
    now = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "report").glob("*-eval.json")}
    assert {name: now[name] for name in written} == written and set(now) - set(written) == {"a-seed1-eval.json"}
    table = (tmp_path / "report" / "experts.md").read_text().split("# Recipes compared")[1]
    row = next(line for line in table.splitlines() if line.startswith("| Pong-a / a |"))
    assert row.startswith("| Pong-a / a | 2 | reference |") and "episodes at 2,400, 2,400 |" in row
    # The run directories do not survive a new machine: nothing is trained again, and the table
    # is made again from the records.
    shutil.rmtree(tmp_path / "runs")
    shutil.rmtree(extra)
    remade = subprocess.run(command, cwd=ROOT, env=dict(env, EXTRA_RUNS=str(extra)),
                            capture_output=True, text=True, timeout=600)
    assert remade.returncode == 0, remade.stderr[-3000:]
    assert remade.stdout.count("not trained again") == 2 and not (tmp_path / "runs").exists()
    assert (tmp_path / "report" / "experts.md").read_text().split("# Recipes compared")[1] == table


def test_a_variant_without_a_flagfile_is_refused_before_training(tmp_path):
    env = _env(tmp_path, VARIANTS="a=flags/no_such.flags")
    result = subprocess.run(["bash", "scripts/recipe_compare.sh", "Pong"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "variant 'a=flags/no_such.flags' is not NAME=FLAGFILE" in result.stderr
    assert not (tmp_path / "runs").exists()
