"""Kill anywhere: SIGKILL at random moments and crashes inside checkpoint writes, exports
and evaluations; the run resumes from its last complete checkpoint and ends with the
same weights, evaluation history and TensorBoard scalars as an uninterrupted run."""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2

from amn_tf import checkpoints, export

pytestmark = pytest.mark.slow  # every test trains through main in subprocesses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--flagfile=flags/smoke.flags", "--deterministic", "--training_steps=1000",
         "--checkpoint_period=200", "--eval_period=400"]


def command(run_dir, export_dir):
    return [sys.executable, "-m", "amn_tf.main", *FLAGS, f"--run_dir={run_dir}",
            f"--export_dir={export_dir}"]


def environment(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **extra)


def final_weights(run_dir):
    newest = checkpoints.CheckpointManager(os.path.join(run_dir, "checkpoints")).complete()[0]
    reader = tf.train.load_checkpoint(os.path.join(newest, "weights"))
    names = [n for n, _ in tf.train.list_variables(os.path.join(newest, "weights")) if "VARIABLE_VALUE" in n]
    return {n: reader.get_tensor(n) for n in names}


def scalar_events(run_dir):
    directory = os.path.join(run_dir, "tensorboard")
    events = []
    for name in sorted(os.listdir(directory)):
        for record in tf.data.TFRecordDataset(os.path.join(directory, name)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                events.append((value.tag, event.step))
    return events


def eval_steps(run_dir):
    with open(os.path.join(run_dir, "eval.jsonl")) as handle:
        return [json.loads(line)["step"] for line in handle]


def eval_returns(run_dir):
    with open(os.path.join(run_dir, "eval.jsonl")) as handle:
        return [json.loads(line)["returns"] for line in handle]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    result = subprocess.run(command(root / "run", root / "export"), cwd=ROOT, env=environment(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "run"


def check_same_as_uninterrupted(run_dir, export_dir, reference):
    mine, theirs = final_weights(run_dir), final_weights(reference)
    assert mine.keys() == theirs.keys()
    for name in mine:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)
    assert eval_steps(run_dir) == eval_steps(reference) == [400, 800, 1000]
    assert eval_returns(run_dir) == eval_returns(reference)  # --deterministic: same scores too
    events = scalar_events(run_dir)
    assert len(events) == len(set(events)), "duplicated TensorBoard scalars"
    assert sorted(events) == sorted(scalar_events(reference)), "lost TensorBoard scalars"
    versions = os.listdir(export_dir / "experts" / "Pong")
    assert versions == ["1"], versions  # one complete SavedModel, no temporary leftovers
    export.LoadedPolicy(str(export_dir / "experts" / "Pong" / "1"))


@pytest.mark.parametrize("site", ["checkpoint_write:2", "evaluation:1", "export_write:1"])
def test_crash_inside_a_write_or_evaluation_resumes_cleanly(uninterrupted, tmp_path, site):
    run_dir, export_dir = tmp_path / "run", tmp_path / "export"
    crashed = subprocess.run(command(run_dir, export_dir), cwd=ROOT,
                             env=environment(AMN_TF_CRASH_AT=site), capture_output=True, text=True,
                             timeout=300)
    assert crashed.returncode == 137
    leftovers = [n for n in os.listdir(run_dir / "checkpoints") if n.startswith(".tmp-")]
    if site.startswith("checkpoint_write"):
        assert leftovers  # the half-written checkpoint is there, under its temporary name
    for name in os.listdir(run_dir / "checkpoints"):  # every non-temporary one is complete
        if name.startswith(checkpoints.PREFIX):
            assert (run_dir / "checkpoints" / name / checkpoints.SENTINEL).exists()
    resumed = subprocess.run(command(run_dir, export_dir), cwd=ROOT, env=environment(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    assert not [n for n in os.listdir(run_dir / "checkpoints") if n.startswith(".tmp-")]
    check_same_as_uninterrupted(run_dir, export_dir, uninterrupted)


def test_sigkill_at_random_moments(uninterrupted, tmp_path):
    run_dir, export_dir = tmp_path / "run", tmp_path / "export"
    rng = random.Random(2026)
    kills, resumed_steps = 0, []
    for _ in range(6):
        process = subprocess.Popen(command(run_dir, export_dir), cwd=ROOT, env=environment(),
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(rng.uniform(3.0, 9.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        output = process.communicate(timeout=120)[0]
        match = re.search(r"resumed from .*ckpt-(\d+)", output)
        if match:
            resumed_steps.append(int(match.group(1)))
        if "SavedModel:" in output or "already finished" in output:
            break
    final = subprocess.run(command(run_dir, export_dir), cwd=ROOT, env=environment(),
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    assert resumed_steps == sorted(resumed_steps)  # never back past a checkpoint it had
    print(f"kill-anywhere: {kills} SIGKILLs, {len(resumed_steps)} resumes at steps {resumed_steps}")
    assert kills >= 2
    check_same_as_uninterrupted(run_dir, export_dir, uninterrupted)


def test_amn_crash_and_resume_matches_uninterrupted(tmp_path):
    import keras

    from amn_tf import envs, networks

    keras.mixed_precision.set_global_policy("float32")
    for seed, game in enumerate(["Pong", "Breakout"]):
        keras.utils.set_random_seed(seed)
        export.export_expert(networks.nature_dqn(len(envs.legal_actions(game))), game,
                             str(tmp_path / "experts" / game / "1"), {}, "paper")

    def amn_command(run_dir):
        return [sys.executable, "-m", "amn_tf.main", "--flagfile=flags/amn_smoke.flags",
                "--deterministic", f"--experts={tmp_path / 'experts'}", f"--run_dir={run_dir}",
                f"--export_dir={tmp_path / 'export'}", "--amn_name=x"]

    reference = subprocess.run(amn_command(tmp_path / "a"), cwd=ROOT, env=environment(),
                               capture_output=True, text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr[-2000:]
    crashed = subprocess.run(amn_command(tmp_path / "b"), cwd=ROOT,
                             env=environment(AMN_TF_CRASH_AT="checkpoint_write:2"),
                             capture_output=True, text=True, timeout=300)
    assert crashed.returncode == 137
    resumed = subprocess.run(amn_command(tmp_path / "b"), cwd=ROOT, env=environment(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-2000:]
    mine, theirs = final_weights(tmp_path / "b"), final_weights(tmp_path / "a")
    for name in theirs:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)
    events = scalar_events(tmp_path / "b")
    assert len(events) == len(set(events)) and sorted(events) == sorted(scalar_events(tmp_path / "a"))


@pytest.fixture(scope="module")
def crashed_at_second_evaluation(tmp_path_factory):
    """A run that left good checkpoints: stopped by a crash in its second evaluation, nothing
    exported. Made once and copied by each full-disk case; a copy resumes under its own
    --run_dir as a moved run directory does (test_dqn_main's larger-budget test copies one too)."""
    root = tmp_path_factory.mktemp("crashed")
    first = subprocess.run(command(root / "run", root / "export"), cwd=ROOT,
                           env=environment(AMN_TF_CRASH_AT="evaluation:2"), capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 137
    assert not (root / "export").exists()
    return root / "run"


@pytest.mark.parametrize("site, code, message", [
    ("checkpoint_write", "ENOSPC", "disk full while writing"),
    ("checkpoint_write", "EROFS", "cannot write"),
    ("export_write", "ENOSPC", "could not write SavedModel"),
])
def test_full_disk_or_read_only_keeps_last_good_state(crashed_at_second_evaluation, tmp_path, site,
                                                     code, message):
    run_dir, export_dir = tmp_path / "run", tmp_path / "export"
    shutil.copytree(crashed_at_second_evaluation, run_dir)  # good checkpoints, nothing exported
    good = sorted(os.listdir(run_dir / "checkpoints"))
    failed = subprocess.run(command(run_dir, export_dir), cwd=ROOT,
                            env=environment(AMN_TF_OSERROR_AT=f"{site}:{code}"),
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0
    lines = [line for line in failed.stderr.splitlines() if line.startswith("amn_tf: error:")]
    assert len(lines) == 1 and message in lines[0], failed.stderr[-1500:]
    assert "Traceback" not in failed.stderr
    # The good checkpoints are still there and nothing partial is left anywhere.
    now = [n for n in sorted(os.listdir(run_dir / "checkpoints")) if not n.startswith(".")]
    before = [n for n in good if not n.startswith(".")]
    if site == "checkpoint_write":  # the failed write changed nothing
        assert now == before
    else:  # training went on to the end; nothing older than before was lost
        assert now[-1] >= before[-1]
    assert not [n for n in os.listdir(run_dir / "checkpoints") if n.startswith(".tmp-")]
    pong = export_dir / "experts" / "Pong"
    assert not pong.exists() or not os.listdir(pong)
    # Once the disk is writable again the same command finishes the run.
    fixed = subprocess.run(command(run_dir, export_dir), cwd=ROOT, env=environment(),
                           capture_output=True, text=True, timeout=300)
    assert fixed.returncode == 0, fixed.stderr[-1500:]
    assert os.listdir(pong) == ["1"]


def test_nonfinite_loss_stops_with_the_update_named_and_keeps_the_checkpoint(tmp_path):
    # Adam at lr 1e38 sends the weights to +-1e38 in one update: the next loss overflows.
    base = ["--flagfile=flags/smoke.flags", "--learning_rate=1e38", "--checkpoint_period=200",
            f"--export_dir={tmp_path / 'export'}"]
    stopped = subprocess.run([sys.executable, "-m", "amn_tf.main", *base, f"--run_dir={tmp_path / 'a'}"],
                             cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=300)
    assert stopped.returncode != 0
    assert re.search(r"amn_tf: error: non-finite loss or gradient at update \d+ \(td_loss=", stopped.stderr)
    assert "Traceback" not in stopped.stderr
    kept = checkpoints.CheckpointManager(str(tmp_path / "a" / "checkpoints")).complete()
    assert kept and kept[-1].endswith("ckpt-000000000200")
    weights = final_weights(tmp_path / "a")
    assert all(np.isfinite(v).all() for v in weights.values() if v.dtype.kind == "f")
    skipped = subprocess.run([sys.executable, "-m", "amn_tf.main", *base, "--skip_nonfinite",
                              f"--run_dir={tmp_path / 'b'}"], cwd=ROOT, env=environment(),
                             capture_output=True, text=True, timeout=300)
    assert skipped.returncode == 0, skipped.stderr[-1500:]
    reader = tf.train.load_checkpoint(os.path.join(
        checkpoints.CheckpointManager(str(tmp_path / "b" / "checkpoints")).complete()[0], "weights"))
    assert reader.get_tensor("skipped/.ATTRIBUTES/VARIABLE_VALUE") > 0
