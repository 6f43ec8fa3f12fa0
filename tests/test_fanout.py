"""Fan-out of expert training and evaluation: in-process without Ray (Ray never imported),
and as tasks on a real local Ray instance, a task whose worker dies resuming on retry."""

import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow  # every test starts main in a subprocess (and Ray or training)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--flagfile=flags/smoke.flags", "--game=", "--training_steps=600", "--learning_starts=100",
        "--eval_period=400"]


def run_main(*args, env_extra=None, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "amn_tf.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_games_without_ray_run_in_process_and_never_import_ray(tmp_path):
    script = (
        "import sys\n"
        "from amn_tf import main\n"
        f"sys.argv = ['amn_tf', *{TINY!r}, '--games=Pong,Breakout', '--run_dir={tmp_path / 'runs'}',"
        f" '--export_dir={tmp_path / 'export'}', '--training_steps=300']\n"
        "try:\n    main.run()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "print('ray imported:', 'ray' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ray imported: False" in result.stdout
    assert "[fanout] 2 dqn job(s) done" in result.stdout
    for game in ("Pong", "Breakout"):  # each game in its own run directory
        assert (tmp_path / "runs" / game / "run.json").exists()
        assert (tmp_path / "export" / "experts" / game / "1" / "saved_model.pb").exists()


def test_ray_tasks_train_evaluate_and_resume_a_dead_worker(tmp_path):
    marker = tmp_path / "crashed-once"
    trained = run_main(*TINY, "--games=Pong,Breakout", "--ray_address=local",
                       f"--run_dir={tmp_path / 'runs'}", f"--export_dir={tmp_path / 'export'}",
                       env_extra={"AMN_TF_CRASH_AT": f"evaluation:1:{marker}"})
    assert trained.returncode == 0, trained.stderr[-3000:]
    output = trained.stdout + trained.stderr
    assert marker.exists()  # one worker died in its first evaluation...
    assert "resumed from" in output  # ...and its retried task resumed from the checkpoint
    assert "[fanout] 2 dqn job(s) done on Ray (local)" in trained.stdout
    models = [str(tmp_path / "export" / "experts" / g / "1") for g in ("Pong", "Breakout")]
    evaluated = run_main("--mode=eval", f"--saved_models={','.join(models)}", "--ray_address=local",
                         "--eval_episodes=1", "--eval_max_steps=30", "--eval_envs=1")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "[fanout] 2 eval job(s) done on Ray (local)" in evaluated.stdout
    assert "Pong: mean" in evaluated.stdout and "Breakout: mean" in evaluated.stdout


def test_eval_fan_out_without_ray_writes_one_json(tmp_path, pong_expert):
    import json

    output = tmp_path / "all.json"
    result = run_main("--mode=eval", f"--saved_models={pong_expert.path},{pong_expert.path}",
                      "--eval_episodes=1", "--eval_max_steps=20", "--eval_envs=1",
                      f"--output_json={output}")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(output.read_text())
    # named by <kind>/<name>/<version>: the model lies outside the project (rundirs.portable_path)
    assert [r["saved_model"] for r in rows] == [os.path.join(*pong_expert.path.split(os.sep)[-3:])] * 2
    assert rows[0]["results"][0]["game"] == "Pong"
    # the same payload as a single eval's, so report's --report_evals reads it
    from amn_tf import report

    assert [e["name"] for e in report.load_eval(str(output))] == ["expert", "expert"]


def test_unreachable_ray_address_fails_fast_with_one_line(tmp_path):
    start = time.time()
    result = run_main(*TINY, "--games=Pong", "--ray_address=127.0.0.1:9", f"--run_dir={tmp_path}/r")
    assert time.time() - start < 60
    assert result.returncode != 0
    assert "cannot reach a Ray cluster at 127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr
