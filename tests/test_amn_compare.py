"""scripts/amn_compare.sh end to end on two shipped experts at a tiny budget: two seeds of a
beta, the single-tau AMN and MDQN (MCDQN takes the same path with another network, and
tests/test_multitask_dqn.py trains both), their SavedModels evaluated, Table 1 with the seeds
averaged; a second call trains nothing and keeps the evaluations; with the run directories
gone, nothing is trained again and the report is made again, the same, from the records the
script kept."""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_amn_compare_trains_every_model_and_averages_the_seeds(tmp_path):
    tiny_eval = "--eval_episodes=1 --eval_envs=1 --eval_max_steps=200"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHON=sys.executable, GAMES="Boxing,Pong",
               BETAS="0.01", SEEDS="0 1",
               RUN_ROOT=str(tmp_path / "runs"), EXPORT_DIR=str(tmp_path / "export"),
               REPORT_DIR=str(tmp_path / "report"), EVAL_FLAGS=tiny_eval,
               EXTRA_FLAGS="--amn_steps=200 --amn_learning_starts=100 --amn_eval_period=200 "
                           "--training_steps=200 --learning_starts=100 --eval_period=200 "
                           "--checkpoint_period=200 --amn_replay_capacity=1000 "
                           "--replay_capacity=1000 --num_envs=1 --held_out_states=32 " + tiny_eval)
    command = ["bash", "scripts/amn_compare.sh", "amn", "tau", "mdqn", "evals", "report"]
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-3000:]
    models = ["amn-beta0.01-seed0", "amn-beta0.01-seed1", "amn-tau0.1-beta0-seed0", "mdqn"]
    for name in models:
        evaluated = json.loads((tmp_path / "report" / f"{name}-eval.json").read_text())
        assert evaluated["saved_model"].endswith(f"/{name}/1")
        assert sorted(r["game"] for r in evaluated["results"]) == ["Boxing", "Pong"]
        flags = json.loads((tmp_path / "runs" / name / "flags.json").read_text())
        assert flags["seed"] == (1 if name.endswith("seed1") else 0)
        if name.startswith("amn"):
            assert flags["beta"] == (0.01 if "beta0.01" in name else 0.0)
            assert flags["tau"] == ("0.1" if "tau0.1" in name else "auto")
    table = (tmp_path / "report" / "table1_saved_models.md").read_text()
    averaged, every = table.split("## Every model")
    assert "amn-beta0.01 (mean of 2 seeds) mean (max)" in averaged
    assert "amn-tau0.1-beta0-seed0 (mean" not in averaged  # one seed: not averaged
    assert "mdqn/1 mean (max)" in every and "amn-tau0.1-beta0-seed0/1 mean (max)" in every
    assert (tmp_path / "report" / "amn_curves.png").read_bytes()[:4] == b"\x89PNG"
    written = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "report").glob("*-eval.json")}
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("run already finished") == len(models)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "report").glob("*-eval.json")} == written
    # The run directories do not survive a new machine: Table 1 is made again from the records.
    tables = {name: (tmp_path / "report" / name).read_text() for name in ("table1.md", "table1_saved_models.md")}
    for name in models:
        kept = {p.name for p in (tmp_path / "report" / "runs" / name).iterdir()}
        assert {"run.json", "flags.json", "flags_history.jsonl", "eval.jsonl"} <= kept
        assert kept <= {"run.json", "flags.json", "flags_history.jsonl", "eval.jsonl", "experts.json"}
    # Nor is anything trained again: its eval JSON and records stand for each run.
    shutil.rmtree(tmp_path / "runs")
    remade = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert remade.returncode == 0, remade.stderr[-3000:]
    assert remade.stdout.count("not trained again") == len(models) and not (tmp_path / "runs").exists()
    assert {name: (tmp_path / "report" / name).read_text() for name in tables} == tables


def test_kept_records_under_docs_are_not_ignored_by_git():
    """The records the comparison scripts keep (<report dir>/runs/<run>, e.g. under
    docs/results/) are what a new machine reports from, so git must not ignore them; the
    top-level runs/ (the scripts' default RUN_ROOT: checkpoints, replay) stays ignored. A
    `runs/` pattern without its leading slash once swallowed every kept record."""
    if not os.path.exists(os.path.join(ROOT, ".git")):  # a directory, or a worktree's file
        import pytest

        pytest.skip("not a git checkout")

    def ignored(path):
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    assert not ignored("docs/results/table1/paper-games/runs/amn-beta0-seed0/eval.jsonl")
    assert not ignored("docs/results/transfer-Breakout/runs/random-seed0/run.json")
    assert ignored("runs/table1/amn-beta0-seed0/checkpoints/ckpt-000000025000")
