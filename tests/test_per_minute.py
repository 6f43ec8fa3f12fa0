"""amn_per_minute.md: AMN settings trained for the same --train_minutes, read against their experts."""

import json

import pytest

from amn_tf import config as config_lib
from amn_tf.report import entry, per_minute
from amn_tf.report.records import load_run

EXPERTS = {"Pong": {"mean": 20.0, "max": 21.0, "episodes": 30, "random_mean": -20.0},
           "Boxing": {"mean": 40.0, "max": 60.0, "episodes": 30, "random_mean": 0.0}}


def _run(root, name, seed, finals, wall, test_plays, **flags):
    """A kept AMN run: two test plays, the last with per-game means ``finals``."""
    run = root / name
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"mode": "amn", "games": list(EXPERTS)}))
    (run / "experts.json").write_text(json.dumps(EXPERTS))
    defaults = {"batch_per_game": 8, "update_period": 4, "amn_learning_rate": 0.00025, "train_minutes": 10.0,
                "amn_steps": 2_000_000, "amn_eval_period": 10_000,
                "seed": seed, "run_dir": str(run)}
    (run / "flags.json").write_text(json.dumps({**defaults, **flags}))
    plays = [{"step": 10_000, "frames": 40_000, "updates": 1_000, "wall_seconds": wall / 2,
              "test_play_seconds": test_plays[0], "games": {g: {"mean": 0.0, "max": 0.0, "episodes": 8} for g in EXPERTS}},
             {"step": 20_000, "frames": 80_000, "updates": 3_000, "wall_seconds": wall,
              "test_play_seconds": test_plays[1], "games": {g: {"mean": m, "max": m, "episodes": 8} for g, m in finals.items()}}]
    (run / "eval.jsonl").write_text("".join(json.dumps(p) + "\n" for p in plays))
    return str(run)


def test_settings_are_read_against_their_experts_per_seed(tmp_path):
    runs = [_run(tmp_path, "ref-0", 0, {"Pong": 18.0, "Boxing": 50.0}, 660.0, (30.0, 30.0)),
            _run(tmp_path, "ref-1", 1, {"Pong": 0.0, "Boxing": 30.0}, 690.0, (40.0, 50.0)),
            _run(tmp_path, "b32-0", 0, {"Pong": 16.0, "Boxing": 32.0}, 630.0, (15.0, 15.0), batch_per_game=32)]
    groups = per_minute.settings([load_run(r) for r in runs])
    assert [(label, [seed for seed, _, _ in members]) for label, _, members in groups] == [
        ("reference", [0, 1]), ("batch_per_game 32", [0])]
    first = groups[0][2][0][2]
    # Pong 18 of 20: 90% of expert, (18 + 20) / 40 = 95% random-relative; Boxing 50 of 40: 125%,
    # random-relative 125% capped at 100%. Both at >= 80%; mean capped (95 + 100) / 2.
    assert first["per_game"]["Pong"] == pytest.approx((90.0, 95.0))
    assert first["per_game"]["Boxing"] == pytest.approx((125.0, 100.0))
    assert first["expert_level"] == 2 and first["capped"] == pytest.approx(97.5)
    assert first["minutes"] == pytest.approx((660 - 60) / 60)  # wall less both test plays
    second = groups[0][2][1][2]  # Pong 0: 0% of expert, 50% random-relative; Boxing 30: 75%, 75%
    assert second["expert_level"] == 0 and second["capped"] == pytest.approx(62.5)
    assert second["minutes"] == pytest.approx(10.0)
    batch = groups[1][2][0][2]  # Pong 16: 80% (at the bar), 90%; Boxing 32: 80%, 80%
    assert batch["expert_level"] == 2 and batch["capped"] == pytest.approx(85.0)
    assert groups[1][1] == "--amn_steps=2000000 --amn_eval_period=10000 --train_minutes=10.0 --batch_per_game=32"


def test_a_flag_added_later_reads_as_its_default_in_older_runs(tmp_path):
    """A run recorded before --amn_expert_steps existed plays like --amn_expert_steps=0: one
    setting with a newer run at 0, another with a newer run at 20000."""
    old = _run(tmp_path, "ref-0", 0, {"Pong": 18.0, "Boxing": 50.0}, 660.0, (30.0, 30.0))
    same = _run(tmp_path, "ref-1", 1, {"Pong": 0.0, "Boxing": 30.0}, 690.0, (40.0, 50.0), amn_expert_steps=0)
    early = _run(tmp_path, "early-0", 0, {"Pong": 0.0, "Boxing": 30.0}, 690.0, (40.0, 50.0), amn_expert_steps=20000)
    groups = per_minute.settings([load_run(r) for r in (old, same, early)])
    assert [(label, [seed for seed, _, _ in members]) for label, _, members in groups] == [
        ("reference", [0, 1]), ("amn_expert_steps 20000", [0])]
    assert groups[1][1].endswith("--amn_expert_steps=20000")


def test_the_table_through_report(tmp_path):
    runs = [_run(tmp_path, "ref-0", 0, {"Pong": 18.0, "Boxing": 50.0}, 660.0, (30.0, 30.0)),
            _run(tmp_path, "ref-1", 1, {"Pong": 0.0, "Boxing": 30.0}, 690.0, (40.0, 50.0)),
            _run(tmp_path, "b32-0", 0, {"Pong": 16.0, "Boxing": 32.0}, 630.0, (15.0, 15.0), batch_per_game=32)]
    out = tmp_path / "out"
    written = entry.run(config_lib.ReportConfig(tuple(runs), str(out), per_minute=True))
    text = (out / "amn_per_minute.md").read_text()
    assert written["per_minute"] == str(out / "amn_per_minute.md")
    assert ("| reference | 2 | 10.0 (10.0, 10.0) | 80,000 (80,000, 80,000) | 3,000 (3,000, 3,000) | "
            "1.0 (2.0, 0.0) | 80% (98%, 62%) | `--mode=amn --amn_steps=2000000 --amn_eval_period=10000 "
            "--train_minutes=10.0 --seed={0,1}` |") in text
    assert "| batch_per_game 32 | 1 | 10.0 | 80,000 | 3,000 | 2.0 | 85% |" in text
    assert "| reference | 45% | 100% |" in text  # Pong (90 + 0) / 2, Boxing (125 + 75) / 2


def test_per_minute_needs_amn_runs(tmp_path):
    with pytest.raises(config_lib.ConfigError, match="--report_per_minute compares AMN runs"):
        run = tmp_path / "t"
        run.mkdir()
        (run / "run.json").write_text(json.dumps({"mode": "transfer", "game": "Breakout"}))
        entry.run(config_lib.ReportConfig((str(run),), str(tmp_path / "out"), per_minute=True))
    assert not (tmp_path / "out").exists()


def _sweep(tmp_path, *steps, **env):
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHON": sys.executable, "RUN_ROOT": str(tmp_path / "runs"),
           "REPORT_DIR": str(tmp_path / "report"), "EXPORT_DIR": str(tmp_path / "exports"), **env}
    return subprocess.run(["bash", "scripts/amn_sweep.sh", *steps], cwd=root, env=env,
                          capture_output=True, text=True)


def test_the_sweep_script_refuses_an_unknown_setting_before_training(tmp_path):
    result = _sweep(tmp_path, SETTINGS="reference batch33")
    assert result.returncode == 2 and "unknown setting batch33" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_the_sweep_report_without_runs_says_to_train_first(tmp_path):
    result = _sweep(tmp_path, "report")
    assert result.returncode == 2 and "no kept runs" in result.stderr and "train first" in result.stderr


@pytest.mark.parametrize("finished", [False, True])
def test_the_sweep_starts_an_interrupted_run_over_and_keeps_a_finished_one(tmp_path, finished):
    """A run a stop signal checkpointed mid-way is trained again from nothing (its minutes are the
    measure); a finished one is left for main to report as finished. ``PYTHON`` here only records
    that it was called (and fails, which ends the script): what the script does before is the test."""
    run = tmp_path / "runs" / "reference-seed0"
    (run / "checkpoints" / "ckpt-000000001000").mkdir(parents=True)
    (run / "checkpoints" / "ckpt-000000001000" / "state.json").write_text(
        json.dumps({"version": 2, "step": 1000, "finished": finished}, indent=2))
    called = tmp_path / "called"
    recorder = tmp_path / "python"
    recorder.write_text(f"#!/bin/sh\necho \"$@\" > {called}\nexit 1\n")
    recorder.chmod(0o755)
    result = _sweep(tmp_path, "train", SETTINGS="reference", SEEDS="0", PYTHON=str(recorder))
    assert result.returncode != 0 and f"--run_dir={run}" in called.read_text()
    assert ("interrupted before its end: starting over" in result.stdout) is not finished
    assert (run / "checkpoints").exists() is finished
