"""The one run loop's checkpoint state (``runner.RunState``): its JSON form, the state the
previous version wrote (resumed through the real command), and a newer version refused; the
metrics its progress lines print."""

from __future__ import annotations

import json
import os
import shutil
import types

import pytest
from conftest import FLAGS_DIR, assert_clean_error, main_in_process, run_main

from amn_tf import checkpoints, parts, runner, snapshots

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


def _finished_smoke_run(smoke_run, tmp_path):
    """A copy of the session's finished smoke run (conftest's ``smoke_run``) to change."""
    assert smoke_run.result.returncode == 0, smoke_run.result.stderr[-2000:]
    run_dir, export_dir = tmp_path / "run", tmp_path / "exports"
    shutil.copytree(smoke_run.run_dir, run_dir)
    shutil.copytree(smoke_run.export_dir, export_dir)
    args = (f"--flagfile={SMOKE}", f"--run_dir={run_dir}", f"--export_dir={export_dir}")
    return str(run_dir), export_dir, args


@pytest.mark.slow
def test_checkpoint_of_the_previous_version_resumes(smoke_run, tmp_path):
    """A run stopped at step 400 by the previous version (its state.json rewritten to exactly
    the keys that version wrote) resumes at 400 and finishes, exporting once."""
    run_dir, export_dir, args = _finished_smoke_run(smoke_run, tmp_path)
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


@pytest.mark.slow
def test_checkpoint_of_a_newer_version_is_refused_in_one_line(smoke_run, tmp_path):
    run_dir, export_dir, args = _finished_smoke_run(smoke_run, tmp_path)
    newest = _checkpoints(run_dir)[0]
    with open(os.path.join(newest, "state.json")) as handle:
        state = json.load(handle)
    checkpoints.write_json_atomically(os.path.join(newest, "state.json"), {**state, "version": 99})
    before = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))

    again = main_in_process(*args, "--training_steps=800")  # main's own error handling
    assert again.returncode == 2
    assert "state version 99 is newer" in assert_clean_error(again)
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == before  # nothing lost
    assert sorted(os.listdir(export_dir / "experts" / "Pong")) == ["1"]


MODES = ("dqn", "transfer", "actor_mimic", "multitask_dqn", "evaluate", "report", "fanout")


def _amn_tf_imports(module: str) -> set:
    import ast
    import glob

    from conftest import REPO_ROOT

    package = os.path.join(REPO_ROOT, "amn_tf", module)  # a module, or a package's every file
    paths = sorted(glob.glob(os.path.join(package, "*.py"))) if os.path.isdir(package) else [package + ".py"]
    names = set()
    for path in paths:
        with open(path) as handle:
            tree = ast.parse(handle.read())
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

    means = parts.MetricMeans()
    for loss, applied in [(0.0002, True), (0.03, True), (0.0001, True)]:
        means.add({"td_loss": np.float32(loss), "applied": applied})
    taken = means.take()
    assert taken["td_loss"] == pytest.approx(0.0101, rel=1e-5)
    assert taken["applied"] == 1.0
    means.add({"td_loss": 2.0})
    assert means.take() == {"td_loss": 2.0}
    assert means.take() == {}


def test_best_snapshot_is_the_restored_timelines_best_test_play():
    history = [{"step": 200, "mean": -3.0}, {"step": 400, "mean": 5.0}, {"step": 600, "mean": 5.0}]
    names = ["step-000000000200", "step-000000000400", "step-000000000600", "step-000000000800",
             ".tmp-step-000000000800-12", "notes.txt", "step-000000000300"]
    best, remove = snapshots.best_snapshot(names, history, 600)
    # The earliest of the two 5.0 plays wins; a snapshot after the restored step (800), one of no
    # recorded test play (300) and a half-written export go; other files stay.
    assert best == (5.0, 400, "step-000000000400")
    assert sorted(remove) == [".tmp-step-000000000800-12", "step-000000000300", "step-000000000800"]
    # Restored at 300: only the test play at 200 is in this timeline.
    best, remove = snapshots.best_snapshot(names, history[:1], 300)
    assert best == (-3.0, 200, "step-000000000200") and "step-000000000400" in remove
    assert snapshots.best_snapshot([], history, 600) == (None, [])


def test_snapshots_stay_while_a_kept_checkpoint_needs_them():
    names = ["step-000000000010", "step-000000000020", "step-000000000050", "other"]
    # Checkpoints at 40 and 50: restored at 40 the best is the one made at 20; at 50, at 50.
    assert snapshots.stale_snapshots(names, [50, 40], 50) == ["step-000000000010"]
    assert snapshots.stale_snapshots(names, [50], 50) == ["step-000000000010", "step-000000000020"]
    assert snapshots.stale_snapshots(names, [], 20) == ["step-000000000010", "step-000000000050"]


class ScriptedAgent:
    """The least an ``Agent`` is, for the run loop's own bookkeeping: one "weight" that each
    learner update increments, test plays whose means follow ``means``, and an export that
    writes the weight it saw (the real agents' exports are tested through main)."""

    label, games, memories, budget_flag = "scripted", ["Pong"], [], "--training_steps"

    def __init__(self, means, export_base):
        import numpy as np
        import tensorflow as tf

        self.means = list(means)
        self.export_base = export_base
        self.weight = tf.Variable(0, dtype=tf.int64)
        self.learner = types.SimpleNamespace(updates=tf.Variable(0, dtype=tf.int64),
                                             skipped=tf.Variable(0, dtype=tf.int64),
                                             step=self._update, update_target=lambda: None)
        self.trackables = {"weight": self.weight, "updates": self.learner.updates}
        self.rng = np.random.default_rng(0)
        self.exports = []  # (step, weight at the export)

    def _update(self):
        self.weight.assign_add(1)
        self.learner.updates.assign_add(1)
        return {}

    def prepare(self, run_dir): pass
    def start(self, step, restored): pass
    def new_episodes(self, step): pass
    def progress(self, fraction): pass
    def act(self, step): return 1
    def observe(self): return []
    def train_scalars(self, metrics, fps): return {}
    def eval_text(self, record): return str(record["mean"])
    def summary(self, record, path, step): return {}
    def close(self): pass

    def evaluate(self, step, plays_so_far):
        return {"step": step, "frames": 4 * step, "mean": self.means[plays_so_far]}, {}

    def export(self, path, record, step, run_dir):
        weight = int(self.weight.numpy())
        os.makedirs(path)
        with open(os.path.join(path, "weight.txt"), "w") as handle:
            handle.write(str(weight))
        self.exports.append((step, weight))


def _scripted_run(tmp_path, means):
    # Test plays every 10 steps (the 5th is the final one at 50), checkpoints every 20 steps
    # (two kept: 40 and 50 at the end), one update per step from step 0.
    schedule = runner.Schedule(total_steps=50, learning_starts=0, update_period=1, log_period=1000,
                               eval_period=10, checkpoint_period=20, keep_best=True)
    agent = ScriptedAgent(means, str(tmp_path / "exports"))
    runner.Runner(str(tmp_path / "run"), agent, schedule).run()
    return agent


def _weights_kept(run_dir) -> dict:
    kept = {}
    for name in sorted(os.listdir(os.path.join(run_dir, "best"))):
        with open(os.path.join(run_dir, "best", name, "weight.txt")) as handle:
            kept[name] = int(handle.read())
    return kept


def test_keep_best_snapshots_each_new_best_and_keeps_what_a_restore_can_need(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    agent = _scripted_run(tmp_path, [1.0, 4.0, 2.0, 2.0, 6.0])
    # A snapshot at each new best (1 at 10, 4 at 20, 6 at 50), holding the network as it was
    # then, and the run's own export at 50.
    assert agent.exports == [(10, 10), (20, 20), (50, 50), (50, 50)]
    # Kept: the best as of each kept checkpoint (40: the one made at 20; 50: at 50).
    assert _weights_kept(run_dir) == {"step-000000000020": 20, "step-000000000050": 50}
    newest = checkpoints.complete_checkpoints(os.path.join(run_dir, "checkpoints"))[0]
    with open(os.path.join(newest, "state.json")) as handle:
        assert json.load(handle)["summary"]["best"] == {
            "mean": 6.0, "step": 50, "frames": 200,
            "export": os.path.join(run_dir, "best", "step-000000000050")}
    assert "best test play: 6.0 at frame 200" in capsys.readouterr().out

    # The newest checkpoint lost: the run resumes at 40, where the best is the one made at 20
    # (a test play of 3 at 50 does not beat it), and the snapshot of the lost timeline goes.
    shutil.rmtree(newest)
    shutil.rmtree(tmp_path / "exports")
    agent = _scripted_run(tmp_path, [1.0, 4.0, 2.0, 2.0, 3.0])
    assert agent.exports == [(50, 50)]  # the run's own export only
    assert _weights_kept(run_dir) == {"step-000000000020": 20}
