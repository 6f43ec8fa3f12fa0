"""The one run loop's checkpoint state (``runner.RunState``): its JSON form, the state the
previous version wrote (resumed through the real command), and a newer version refused; the
metrics its progress lines print."""

from __future__ import annotations

import json
import os
import shutil

from conftest import FLAGS_DIR, run_main

from amn_tf import checkpoints, runner

SMOKE = os.path.join(FLAGS_DIR, "smoke.flags")

# What the DQN loop of the previous version (before the one run loop) wrote in state.json:
# one replay generator under "replay_rng", no "version", no "games".
PREVIOUS_DQN_KEYS = {"step", "actor_rng", "replay_rng", "replay_saved", "update_credit",
                     "finished", "summary"}


def _rng_state(seed):
    import numpy as np

    return np.random.default_rng(seed).bit_generator.state


def test_state_round_trips_through_json():
    state = runner.RunState(step=1200, actor_rng=_rng_state(1), replay_rngs=[_rng_state(2), _rng_state(3)],
                            replay_saved=True, update_credit=0.75, finished=False,
                            summary={"pending_export": "x/1"}, games=["Pong", "Boxing"],
                            wall_seconds=123.4)
    payload = json.loads(json.dumps(state.to_json()))
    assert payload["version"] == runner.STATE_VERSION
    assert "path" not in payload and "replay_restored" not in payload
    assert runner.RunState.from_json(payload) == state


def test_previous_versions_single_game_state_reads_as_one_replay_generator():
    previous = {"step": 400, "actor_rng": _rng_state(1), "replay_rng": _rng_state(2),
                "replay_saved": False, "update_credit": 0.5, "finished": False, "summary": {},
                "path": "ckpt-000000000400", "replay_restored": False}
    state = runner.RunState.from_json(previous)
    assert state.step == 400 and state.replay_rngs == [_rng_state(2)] and state.games == []
    assert state.update_credit == 0.5 and state.path == "ckpt-000000000400"
    # Its wall-clock was not kept: unknown from here on, not counted from zero.
    assert state.wall_seconds is None and runner.RunState().wall_seconds == 0.0


def _checkpoints(run_dir):
    return checkpoints.complete_checkpoints(os.path.join(run_dir, "checkpoints"))  # newest first


def _finished_smoke_run(tmp_path):
    run_dir, export_dir = tmp_path / "run", tmp_path / "exports"
    args = (f"--flagfile={SMOKE}", f"--run_dir={run_dir}", f"--export_dir={export_dir}")
    first = run_main(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    return str(run_dir), export_dir, args


def test_checkpoint_of_the_previous_version_resumes(tmp_path):
    """A run stopped at step 400 by the previous version (its state.json rewritten to exactly
    the keys that version wrote) resumes at 400 and finishes, exporting once."""
    run_dir, export_dir, args = _finished_smoke_run(tmp_path)
    newest, middle = _checkpoints(run_dir)[:2]
    shutil.rmtree(newest)  # the run as it stood at its step-400 checkpoint
    shutil.rmtree(export_dir)
    with open(os.path.join(middle, "state.json")) as handle:
        state = json.load(handle)
    assert state["step"] == 400 and state["version"] == runner.STATE_VERSION
    state["replay_rng"] = state.pop("replay_rngs")[0]
    previous = {key: state[key] for key in PREVIOUS_DQN_KEYS}
    checkpoints.write_json_atomically(os.path.join(middle, "state.json"), previous)

    resumed = run_main(*args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout and "ckpt-000000000400 at frame 1,600" in resumed.stdout
    with open(os.path.join(_checkpoints(run_dir)[0], "state.json")) as handle:
        final = json.load(handle)
    assert final["step"] == 600 and final["finished"] and final["version"] == runner.STATE_VERSION
    assert len(final["replay_rngs"]) == 1
    assert sorted(os.listdir(export_dir / "experts" / "Pong")) == ["1"]


def test_checkpoint_of_a_newer_version_is_refused_in_one_line(tmp_path):
    run_dir, export_dir, args = _finished_smoke_run(tmp_path)
    newest = _checkpoints(run_dir)[0]
    with open(os.path.join(newest, "state.json")) as handle:
        state = json.load(handle)
    checkpoints.write_json_atomically(os.path.join(newest, "state.json"), {**state, "version": 99})
    before = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))

    again = run_main(*args, "--training_steps=800")
    assert again.returncode == 2
    lines = [line for line in again.stderr.splitlines() if line.startswith("amn_tf: error:")]
    assert len(lines) == 1 and "state version 99 is newer" in lines[0], again.stderr[-2000:]
    assert "Traceback" not in again.stderr
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == before  # nothing lost
    assert sorted(os.listdir(export_dir / "experts" / "Pong")) == ["1"]


MODES = ("dqn", "transfer", "actor_mimic", "multitask_dqn", "evaluate", "report", "fanout")


def _amn_tf_imports(module: str) -> set:
    import ast

    from conftest import REPO_ROOT

    with open(os.path.join(REPO_ROOT, "amn_tf", f"{module}.py")) as handle:
        tree = ast.parse(handle.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "amn_tf":
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("amn_tf."):
            names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".")[1] for a in node.names if a.name.startswith("amn_tf."))
    return names


def test_no_mode_imports_another_mode():
    for mode in MODES:
        assert not (_amn_tf_imports(mode) & set(MODES)) - {mode}, mode


def test_report_and_flag_parsing_do_not_import_tensorflow():
    import subprocess
    import sys

    from conftest import REPO_ROOT

    code = ("import sys, amn_tf.cli, amn_tf.report, amn_tf.tables; "
            "print('tensorflow' in sys.modules or 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr[-2000:]


def test_logged_metrics_are_the_means_since_the_last_log_line():
    """Three updates with losses 0.0002, 0.03 and 0.0001 (a sparse-reward game's minibatches):
    the line shows their mean, 0.0101, not the last one; the next window starts afresh, and a
    window without updates gives nothing (the runner then keeps the previous line's means)."""
    import numpy as np
    import pytest

    means = runner.MetricMeans()
    for loss, applied in [(0.0002, True), (0.03, True), (0.0001, True)]:
        means.add({"td_loss": np.float32(loss), "applied": applied})
    taken = means.take()
    assert taken["td_loss"] == pytest.approx(0.0101, rel=1e-5)
    assert taken["applied"] == 1.0
    means.add({"td_loss": 2.0})
    assert means.take() == {"td_loss": 2.0}
    assert means.take() == {}
