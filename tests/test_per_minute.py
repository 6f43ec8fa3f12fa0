"""amn_per_minute.md: AMN settings trained for the same --train_minutes, read against their experts."""

import json

import pytest

from amn_tf import config as config_lib
from amn_tf.report import entry, per_minute
from amn_tf.report.records import load_run, without_seed

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


RATE = {"probe_minutes": 3.0, "probe_frames": 60_000, "frames_per_second": 400.0}


def test_a_rate_gives_frames_for_minutes_and_minutes_back_for_frames():
    # 3 minutes reached 60,000 frames per game; 7 more minutes at 400 frames/s add 168,000
    assert per_minute.frames_in(RATE, 10.0) == pytest.approx(228_000)
    assert per_minute.minutes_for(RATE, 228_000) == pytest.approx(10.0)
    assert per_minute.minutes_for(RATE, 60_000 + 24_000) == pytest.approx(4.0)
    assert without_seed("batch32-seed11") == "batch32" and without_seed("lr2.5e-4-seed0") == "lr2.5e-4"


def _rates(tmp_path, **settings):
    path = tmp_path / "rates.json"
    path.write_text(json.dumps({"settings": settings}))
    return str(path)


def test_step_budget_runs_read_their_minutes_through_their_settings_rate(tmp_path):
    """Runs trained by step budgets beside other work: their wall clocks (here 3,000 s) say
    nothing; their frames through the setting's rate measured alone give the minutes."""
    runs = [_run(tmp_path, "reference-seed0", 0, {"Pong": 18.0, "Boxing": 50.0}, 3000.0, (30.0, 30.0),
                 train_minutes=None, amn_steps=20_000),
            _run(tmp_path, "batch32-seed0", 0, {"Pong": 16.0, "Boxing": 32.0}, 3000.0, (15.0, 15.0),
                 train_minutes=None, amn_steps=20_000, batch_per_game=32)]
    # both reached 80,000 frames: reference at 400 frames/s from 60,000 at 3 minutes (3 + 20,000 / 24,000
    # = 3.83 minutes); batch32 at 200 frames/s from 20,000 at 2 minutes (2 + 60,000 / 12,000 = 7.0)
    rates = _rates(tmp_path, reference=RATE,
                   batch32={"probe_minutes": 2.0, "probe_frames": 20_000, "frames_per_second": 200.0})
    out = tmp_path / "out"
    entry.run(config_lib.ReportConfig(tuple(runs), str(out), per_minute=True, rates=rates))
    text = (out / "amn_per_minute.md").read_text()
    assert "| reference | 1 | 3.8 | 400 | 80,000 | 3,000 | 2.0 | 98% |" in text
    assert "| batch_per_game 32 | 1 | 7.0 | 200 | 80,000 | 3,000 | 2.0 | 85% |" in text
    assert "measured alone on the machine by `benchmarks/amn_rate.py`" in text


def test_a_step_budget_run_without_its_settings_rate_is_refused_before_writing(tmp_path):
    runs = [_run(tmp_path, "reference-seed0", 0, {"Pong": 18.0, "Boxing": 50.0}, 600.0, (30.0, 30.0),
                 train_minutes=None),
            _run(tmp_path, "envs8-seed0", 0, {"Pong": 18.0, "Boxing": 50.0}, 600.0, (30.0, 30.0),
                 train_minutes=None, num_envs=8)]
    out = tmp_path / "out"
    with pytest.raises(config_lib.ConfigError, match="no rate for setting 'envs8'.*scripts/amn_sweep.sh rates"):
        entry.run(config_lib.ReportConfig(tuple(runs), str(out), per_minute=True,
                                          rates=_rates(tmp_path, reference=RATE)))
    assert not out.exists()


@pytest.mark.parametrize("content", ["{}", '{"settings": {"reference": {"probe_minutes": 3}}}',
                                     '{"settings": {"reference": {"probe_minutes": 3, "probe_frames": 1, '
                                     '"frames_per_second": 0}}}', "not json"])
def test_a_bad_rates_file_is_one_clear_error(tmp_path, content):
    path = tmp_path / "rates.json"
    path.write_text(content)
    with pytest.raises(config_lib.ConfigError, match="is not a rates JSON of benchmarks/amn_rate.py"):
        per_minute.load_rates(str(path))


def test_the_probe_reads_its_steady_rate_from_the_second_half_of_its_progress_lines():
    loop_fps = _loop_fps()
    # (seconds, frames per game): the first lines still run fast; the second half, from the third
    # of six, gains 3 x 4,000 frames in 30 s = 400 frames/s
    marks = [(0.0, 4_000), (5.0, 8_000), (10.0, 12_000), (20.0, 16_000), (30.0, 20_000), (40.0, 24_000)]
    assert loop_fps.steady_rate(marks) == pytest.approx((24_000 - 16_000) / (40 - 20))
    assert loop_fps.steady_rate(marks[:5]) == pytest.approx((20_000 - 12_000) / (30 - 10))
    with pytest.raises(ValueError, match="only 3 progress lines"):
        loop_fps.steady_rate(marks[:3])


def _loop_fps():
    """benchmarks/loop_fps.py (no flags of its own: safe to import beside main's)."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "loop_fps.py")
    spec = importlib.util.spec_from_file_location("loop_fps", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    result = _sweep(tmp_path, "train", SETTINGS="reference", SEEDS="0", PYTHON=str(recorder), BUDGET="minutes")
    assert result.returncode != 0 and f"--run_dir={run}" in called.read_text()
    assert ("interrupted before its end: starting over" in result.stdout) is not finished
    assert (run / "checkpoints").exists() is finished


def _recorder(tmp_path):
    """A PYTHON for the sweep script that runs benchmarks/amn_rate.py's lookups (--steps_for,
    --measured, --same_as) for real and, for anything else (a training, a probe), records its arguments in
    ``called`` and fails (ending the script)."""
    import sys

    called = tmp_path / "called"
    recorder = tmp_path / "python"
    recorder.write_text(f"""#!/bin/sh
case "$*" in *--steps_for=*|*--measured*|*--same_as=*) exec {sys.executable} "$@" ;; esac
echo "$@" >> {called}
exit 1
""")
    recorder.chmod(0o755)
    return str(recorder), called


def test_the_sweep_trains_each_setting_for_the_steps_its_rate_gives(tmp_path):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "rates.json").write_text(json.dumps({"settings": {"reference": RATE}}))
    recorder, called = _recorder(tmp_path)
    result = _sweep(tmp_path, "train", SETTINGS="reference", SEEDS="0", PYTHON=recorder)
    # 10 minutes at RATE: 228,000 frames per game = 57,000 agent steps
    assert result.returncode != 0, result.stderr
    command = called.read_text()
    assert "--mode=amn --amn_steps=57000 " in command and "--train_minutes" not in command


def test_the_sweep_without_a_settings_rate_stops_before_training(tmp_path):
    recorder, called = _recorder(tmp_path)
    result = _sweep(tmp_path, "train", SETTINGS="reference", SEEDS="0", PYTHON=recorder)
    assert result.returncode != 0 and "scripts/amn_sweep.sh rates" in result.stderr
    assert not called.exists() and not (tmp_path / "runs" / "reference-seed0").exists()


def test_the_sweep_measures_only_the_rates_it_lacks(tmp_path):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "rates.json").write_text(json.dumps({"settings": {"reference": RATE}}))
    recorder, called = _recorder(tmp_path)
    result = _sweep(tmp_path, "rates", SETTINGS="reference batch32", PYTHON=recorder)
    assert "reference: rate measured already" in result.stdout
    probe = called.read_text()  # the one probe run (the recorder fails it, ending the script)
    assert probe.startswith("benchmarks/amn_rate.py --name=batch32 ") and probe.rstrip().endswith(
        "-- --batch_per_game=32"), probe


def test_a_learning_rate_setting_takes_the_references_rate_without_a_probe(tmp_path):
    (tmp_path / "report").mkdir()
    rates = tmp_path / "report" / "rates.json"
    rates.write_text(json.dumps({"settings": {"reference": RATE}}))
    recorder, called = _recorder(tmp_path)
    result = _sweep(tmp_path, "rates", SETTINGS="reference lr5e-4", PYTHON=recorder)
    assert result.returncode == 0, result.stderr
    assert not called.exists()  # no probe ran
    entry = json.loads(rates.read_text())["settings"]["lr5e-4"]
    assert entry["same_as"] == "reference" and entry["flags"] == "--amn_learning_rate=0.0005"
    assert {k: entry[k] for k in RATE} == RATE


def test_the_sweep_by_the_clock_has_no_rates_to_measure(tmp_path):
    result = _sweep(tmp_path, "rates", BUDGET="minutes")
    assert result.returncode == 2 and "no rates to measure" in result.stderr


@pytest.mark.slow
def test_the_probe_measures_a_real_amn_and_its_rate_gives_the_sweeps_steps(tmp_path):
    """benchmarks/amn_rate.py on two shipped experts for a few seconds of training: a rate entry
    the report and the sweep read, and --steps_for equal to frames_in / 4."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rates = tmp_path / "rates.json"
    flags = ["--experts=saved_models/experts/Pong/1,saved_models/experts/Boxing/1", "--amn_learning_starts=50"]
    base = [sys.executable, "benchmarks/amn_rate.py", "--name=tiny", f"--rates_json={rates}"]
    probe = subprocess.run([*base, "--probe_minutes=0.5", "--log_steps=10", "--", *flags], cwd=root,
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr[-3000:]
    rate = per_minute.load_rates(str(rates))["tiny"]
    assert rate["probe_minutes"] >= 0.5 and rate["probe_frames"] > 0 and rate["frames_per_second"] > 0
    assert rate["progress_lines"] >= 4 and rate["flags"] == " ".join(flags)
    steps = subprocess.run([*base, "--steps_for=2"], cwd=root, capture_output=True, text=True)
    assert int(steps.stdout) == round(per_minute.frames_in(rate, 2.0) / 4)
    assert not list(tmp_path.glob("*.partial"))
