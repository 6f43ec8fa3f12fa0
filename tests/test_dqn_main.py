"""End to end: ``python -m amn_tf.main`` on real Pong with tiny budgets, resuming after a
kill, stopping on SIGTERM (all slow: each starts main in a subprocess); every shipped flagfile
and clean errors for bad inputs, through main in-process (fast), with a few bad inputs also
through a real process (slow)."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import (
    FLAGS_DIR,
    REPO_ROOT,
    assert_clean_error,
    describe,
    main_command,
    main_in_process,
    parsed_flags,
    run_main,
    subprocess_env,
)

from amn_tf import checkpoints, cli, export

SMOKE = os.path.join(FLAGS_DIR, "smoke.flags")


def read_jsonl(path):
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def complete_checkpoints(run_dir) -> list:
    """(step, path) of complete checkpoints, oldest first."""
    found = []
    for path in glob.glob(os.path.join(run_dir, "checkpoints", checkpoints.PREFIX + "*")):
        if os.path.exists(os.path.join(path, checkpoints.SENTINEL)):
            with open(os.path.join(path, "state.json")) as handle:
                found.append((json.load(handle)["step"], path))
    return sorted(found)


def newest_state(run_dir) -> dict:
    _, path = complete_checkpoints(run_dir)[-1]
    with open(os.path.join(path, "state.json")) as handle:
        return json.load(handle)


def event_tags(directory) -> set:
    import tensorflow as tf

    tags = set()
    for path in glob.glob(os.path.join(directory, "events.out.tfevents*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            tags.update(value.tag for value in event.summary.value)
    return tags


# ------------------------------------------------------------------ smoke run
@pytest.mark.slow
def test_smoke_run_trains_evaluates_and_exports(smoke_run):
    result, run_dir = smoke_run.result, smoke_run.run_dir
    assert result.returncode == 0, describe(result)
    assert "Traceback" not in result.stderr
    # Evaluation history: one mid-run test play (frame 1,600) and the final one (2,400).
    evaluations = read_jsonl(os.path.join(run_dir, "eval.jsonl"))
    assert [e["step"] for e in evaluations] == [400, 600]
    assert all(e["frames"] == 4 * e["step"] and e["game"] == "Pong" for e in evaluations)
    # The training's wall-clock by each test play (the recipe report's hours to a score).
    assert 0 < evaluations[0]["wall_seconds"] < evaluations[1]["wall_seconds"] < 600
    # TensorBoard scalars with the CleanRL-style names.
    events = glob.glob(os.path.join(run_dir, "tensorboard", "events.out.tfevents*"))
    assert events, os.listdir(run_dir)
    tags = event_tags(os.path.join(run_dir, "tensorboard"))
    assert {"eval/mean_return", "charts/SPS", "losses/td_loss", "charts/epsilon"} <= tags
    # Resolved flags and the run's identity.
    with open(os.path.join(run_dir, "flags.json")) as handle:
        resolved = json.load(handle)
    assert resolved["game"] == "Pong" and resolved["training_steps"] == 600
    assert resolved["run_dir"] == run_dir
    with open(os.path.join(run_dir, "run.json")) as handle:
        assert json.load(handle) == {"mode": "dqn", "game": "Pong"}
    # The final checkpoint marks the run finished.
    state = newest_state(run_dir)
    assert state["step"] == 600 and state["finished"] is True
    # The exported expert loads, knows its game, and plays legal actions.
    path = os.path.join(smoke_run.export_dir, "experts", "Pong", "1")
    assert f"SavedModel: {path}" in result.stdout
    assert state["summary"]["export"] == path
    policy = export.LoadedPolicy(path)
    assert policy.kind == "expert" and policy.games == ["Pong"]
    assert policy.metadata["provenance"]["agent_steps"] == 600
    assert policy.metadata["provenance"]["frames_trained"] == 2400
    assert policy.metadata["provenance"]["flags"]["game"] == "Pong"
    import numpy as np

    frames = np.random.default_rng(0).integers(0, 256, (4, 84, 84, 4), dtype=np.uint8)
    assert set(policy.act(frames, "Pong").tolist()) <= {0, 1, 3, 4, 11, 12}


@pytest.mark.slow
def test_rerun_of_a_finished_run_does_nothing(smoke_run):
    assert smoke_run.result.returncode == 0, describe(smoke_run.result)
    evaluations = read_jsonl(os.path.join(smoke_run.run_dir, "eval.jsonl"))
    again = run_main(*smoke_run.args)
    assert again.returncode == 0, describe(again)
    assert "run already finished" in again.stdout
    assert os.listdir(os.path.join(smoke_run.export_dir, "experts", "Pong")) == ["1"]
    assert read_jsonl(os.path.join(smoke_run.run_dir, "eval.jsonl")) == evaluations


@pytest.mark.slow
def test_a_larger_budget_extends_a_finished_run(smoke_run, tmp_path):
    import shutil

    assert smoke_run.result.returncode == 0, describe(smoke_run.result)
    run_dir, export_dir = str(tmp_path / "run-extended"), smoke_run.export_dir + "-extended"
    shutil.copytree(smoke_run.run_dir, run_dir)
    shutil.copytree(smoke_run.export_dir, export_dir)
    longer = run_main(f"--flagfile={SMOKE}", f"--run_dir={run_dir}", f"--export_dir={export_dir}",
                      "--training_steps=800", "--learning_rate=0.0002")
    assert longer.returncode == 0, describe(longer)
    assert "extending the finished run from 2,400 to 3,200 frames" in longer.stdout
    evaluations = read_jsonl(os.path.join(run_dir, "eval.jsonl"))
    assert [e["step"] for e in evaluations] == [400, 600, 800]
    state = newest_state(run_dir)
    assert state["step"] == 800 and state["finished"] is True
    # The clock goes on from the first invocation's (the time between them is not training).
    first = newest_state(smoke_run.run_dir)["wall_seconds"]
    assert evaluations[1]["wall_seconds"] <= first < evaluations[2]["wall_seconds"] <= state["wall_seconds"]
    assert state["wall_seconds"] - first < 300
    # The flags of both invocations are kept, the second from the step it resumed at; the
    # report groups the run by its last recipe and says what changed where.
    history = read_jsonl(os.path.join(run_dir, "flags_history.jsonl"))
    assert [h["from_step"] for h in history] == [0, 600]
    assert [h["flags"]["training_steps"] for h in history] == [600, 800]
    assert history[1]["flags"]["learning_rate"] == 0.0002 != history[0]["flags"]["learning_rate"]
    report = run_main("--mode=report", f"--report_runs={smoke_run.run_dir},{run_dir}",
                      f"--report_dir={tmp_path / 'docs'}")
    assert report.returncode == 0, describe(report)
    table = (tmp_path / "docs" / "experts.md").read_text()
    before = history[0]["flags"]["learning_rate"]
    assert (f"- run-extended: recipe changed on resuming at 2,400 frames: learning_rate 0.0002 (was {before}); "
            "the table groups it by its last recipe") in table
    # The longer run is a new version beside the first, which stays as it was.
    assert sorted(os.listdir(os.path.join(export_dir, "experts", "Pong"))) == ["1", "2"]
    assert export.LoadedPolicy(os.path.join(export_dir, "experts", "Pong", "2")).metadata[
        "provenance"]["agent_steps"] == 800


@pytest.mark.slow
def test_dueling_run_trains_exports_and_resumes_only_with_its_head(tmp_path):
    run_dir, export_dir = tmp_path / "run", tmp_path / "exports"
    args = (f"--flagfile={SMOKE}", f"--run_dir={run_dir}", f"--export_dir={export_dir}")
    result = run_main(*args, "--dueling")
    assert result.returncode == 0, describe(result)
    path = export_dir / "experts" / "Pong" / "1"
    policy = export.LoadedPolicy(str(path))
    assert policy.metadata["provenance"]["flags"]["dueling"] is True
    flags_before = (run_dir / "flags.json").read_text()
    # Training on without the head is refused before anything is touched, not read as damage.
    refused = run_main(*args, "--training_steps=800")
    line = assert_clean_error(refused)
    assert "trained with --dueling=True" in line and "resume it with --dueling=True" in line
    assert (run_dir / "flags.json").read_text() == flags_before
    resumed = run_main(*args, "--dueling", "--training_steps=800")
    assert resumed.returncode == 0, describe(resumed)
    assert "resumed from" in resumed.stdout
    assert newest_state(str(run_dir))["step"] == 800


def test_dueling_on_transfer_is_a_flag_mistake(tmp_path):
    """A transferred DQN has its init's architecture: --dueling there is a flag mistake."""
    line = assert_clean_error(main_in_process("--mode=transfer", "--game=Breakout", "--init=random",
                                              "--dueling", f"--run_dir={tmp_path / 't'}"))
    assert "--dueling is for --mode=dqn" in line and not (tmp_path / "t").exists()


def _outputs(path):
    import numpy as np

    frames = np.random.default_rng(1).integers(0, 256, (4, 84, 84, 4), dtype=np.uint8)
    return export.LoadedPolicy(str(path)).outputs(frames, "Pong")["q_values"].numpy()


def _snapshots(run_dir) -> list:
    return sorted(os.listdir(os.path.join(run_dir, "best")))


def _expected_snapshots(plays, checkpoint_steps=(400, 600)) -> list:
    """A snapshot at each new best test play; kept: the newest at or before each checkpoint."""
    made, best = [], None
    for play in plays:
        if best is None or play["mean"] > best:
            made.append(play["step"])
            best = play["mean"]
    return sorted({f"step-{max(s for s in made if s <= c):012d}" for c in checkpoint_steps})


@pytest.mark.slow
def test_keep_best_exports_the_best_test_play_and_resumes_to_the_same_choice(tmp_path):
    """--keep_best: the network of the highest test play (the earliest on a tie) is exported to
    <run_dir>/best/ while training goes on (with the earlier bests a kept checkpoint still
    needs); a resume drops the snapshots of the timeline it abandons."""
    import numpy as np

    run_dir, export_dir = tmp_path / "run", tmp_path / "exports"
    args = (f"--flagfile={SMOKE}", f"--run_dir={run_dir}", f"--export_dir={export_dir}",
            "--keep_best", "--eval_period=200", "--eval_max_steps=150")
    first = run_main(*args)
    assert first.returncode == 0, describe(first)
    plays = read_jsonl(run_dir / "eval.jsonl")
    assert [p["step"] for p in plays] == [200, 400, 600]
    means = [p["mean"] for p in plays]
    best = plays[means.index(max(means))]
    assert _snapshots(run_dir) == _expected_snapshots(plays)
    snapshot = run_dir / "best" / f"step-{best['step']:012d}"
    provenance = export.LoadedPolicy(str(snapshot)).metadata["provenance"]
    assert provenance["agent_steps"] == best["step"] and provenance["final_eval"]["mean"] == best["mean"]
    assert f"best test play: {best['mean']:.1f} at frame {best['frames']:,}: SavedModel {snapshot}" in first.stdout
    assert newest_state(str(run_dir))["summary"]["best"]["export"] == str(snapshot)
    # The snapshot is the network at its test play: learning after it changed the final one.
    final = _outputs(export_dir / "experts" / "Pong" / "1")
    assert np.array_equal(_outputs(snapshot), final) == (best["step"] == 600)

    # Back to the step-400 checkpoint, with a snapshot from the abandoned steps 400-600 planted
    # (as if the run had crashed after a new best at 600): the resume removes it, and the run
    # ends with the best of its own test plays.
    newest = complete_checkpoints(str(run_dir))[-1][1]
    shutil.rmtree(newest)
    shutil.rmtree(export_dir)
    planted = run_dir / "best" / "step-000000000600"
    if not planted.exists():
        shutil.copytree(snapshot, planted)
    (run_dir / "best" / ".tmp-step-000000000600-1").mkdir()
    again = run_main(*args)
    assert again.returncode == 0, describe(again)
    assert "resumed from" in again.stdout and "at frame 1,600" in again.stdout
    plays = read_jsonl(run_dir / "eval.jsonl")
    assert [p["step"] for p in plays] == [200, 400, 600]
    means = [p["mean"] for p in plays]
    best = plays[means.index(max(means))]
    assert _snapshots(run_dir) == _expected_snapshots(plays)
    assert newest_state(str(run_dir))["summary"]["best"]["step"] == best["step"]
    if best["step"] == 600:  # made again by this run, not the planted copy
        assert np.array_equal(_outputs(run_dir / "best" / "step-000000000600"),
                              _outputs(export_dir / "experts" / "Pong" / "1"))


@pytest.mark.slow
def test_a_run_with_its_replay_saved_resumes_only_with_the_same_replay_shape(tmp_path):
    run_dir, export_dir = tmp_path / "run", tmp_path / "exports"
    args = (f"--flagfile={SMOKE}", f"--run_dir={run_dir}", f"--export_dir={export_dir}", "--save_replay")
    first = run_main(*args)
    assert first.returncode == 0, describe(first)
    flags_before = (run_dir / "flags.json").read_text()
    history_before = (run_dir / "flags_history.jsonl").read_text()
    for changed in ("--replay_capacity=3000", "--num_envs=4"):
        # Not "every checkpoint failed to load, move the directory away": the run is intact.
        line = assert_clean_error(run_main(*args, changed, "--training_steps=800"))
        flag = changed.split("=")[0]
        assert f"trained with {flag}=" in line and "replay of that shape" in line, line
        assert "move the directory away" not in line
    assert (run_dir / "flags.json").read_text() == flags_before
    assert (run_dir / "flags_history.jsonl").read_text() == history_before
    resumed = run_main(*args, "--training_steps=800")
    assert resumed.returncode == 0, describe(resumed)
    assert "resumed from" in resumed.stdout and newest_state(str(run_dir))["step"] == 800


@pytest.mark.slow
def test_a_resume_whose_flags_no_checkpoint_fits_says_so_and_keeps_the_runs_record(tmp_path):
    run_dir, export_dir = tmp_path / "run", tmp_path / "exports"
    args = (f"--flagfile={SMOKE}", f"--run_dir={run_dir}", f"--export_dir={export_dir}")
    first = run_main(*args)
    assert first.returncode == 0, describe(first)
    records = {name: (run_dir / name).read_text() for name in ("flags.json", "flags_history.jsonl")}
    # RMSprop's slots do not fit Adam's checkpoint: every checkpoint fails to load.
    line = assert_clean_error(run_main(*args, "--optimizer=rmsprop", "--training_steps=800"))
    assert "every one failed to load" in line, line
    assert "this resume changed --optimizer=rmsprop (trained with adam): resume with the run's flags" in line
    assert {name: (run_dir / name).read_text() for name in records} == records
    resumed = run_main(*args, "--training_steps=800")
    assert resumed.returncode == 0, describe(resumed)
    assert "resumed from" in resumed.stdout and newest_state(str(run_dir))["step"] == 800


@pytest.mark.slow
def test_precision_check_compares_bfloat16_with_float32_on_a_runs_checkpoint(tmp_path):
    """scripts/precision_check.py on a run's own weights and replay: bfloat16 really differs
    from float32 (a nonzero Q difference), by far less than the Q-values, and its gradient
    points the same way."""
    run_dir = tmp_path / "run"
    args = (f"--flagfile={SMOKE}", f"--run_dir={run_dir}", f"--export_dir={tmp_path / 'exports'}")
    assert run_main(*args).returncode == 0
    script = os.path.join(REPO_ROOT, "scripts", "precision_check.py")
    refused = subprocess.run([sys.executable, script, str(run_dir)], cwd=REPO_ROOT, env=subprocess_env(),
                             capture_output=True, text=True, timeout=240)
    assert refused.returncode != 0 and "train it with --save_replay" in refused.stderr
    assert run_main(*args, "--save_replay", "--training_steps=800").returncode == 0
    result = subprocess.run([sys.executable, script, str(run_dir), "--batches=3", "--batch_size=8"],
                            cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, describe(result)
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line}
    assert "24 replay states" in result.stdout and "checkpoint ckpt-000000000800" in result.stdout
    q_abs = float(rows["mean abs Q (float32)"])
    median_error = float(rows["largest Q difference per state, median / max"].split(" / ")[0])
    assert 0 < median_error < 0.05 * q_abs, rows
    assert float(rows["TD-loss gradient cosine, bf16 vs float32, mean / min"].split(" / ")[1]) > 0.9, rows


@pytest.mark.slow
def test_run_dir_of_another_game_is_refused(smoke_run):
    assert smoke_run.result.returncode == 0, describe(smoke_run.result)
    flags_path = os.path.join(smoke_run.run_dir, "flags.json")
    with open(flags_path) as handle:
        before = handle.read()
    result = main_in_process(*smoke_run.args, "--game=Breakout")
    line = assert_clean_error(result)
    assert "game='Pong'" in line and "Breakout" in line
    with open(flags_path) as handle:
        assert handle.read() == before  # the other run's directory is left alone


# ------------------------------------------------------------ kill and stop
def start_main(args, log_path):
    log = open(log_path, "w")
    process = subprocess.Popen(main_command(*args), cwd=REPO_ROOT, env=subprocess_env(),
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    return process, log


def wait_for_checkpoint(process, run_dir, log_path, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = complete_checkpoints(run_dir) if os.path.isdir(os.path.join(run_dir, "checkpoints")) else []
        if found:
            return found[-1][0]
        if process.poll() is not None:
            with open(log_path) as handle:
                pytest.fail(f"run ended (exit {process.returncode}) before a checkpoint:\n{handle.read()}")
        time.sleep(0.05)
    process.kill()
    pytest.fail("no checkpoint appeared in time")


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    run_dir = str(tmp_path / "run")
    args = (f"--flagfile={SMOKE}", f"--run_dir={run_dir}", f"--export_dir={tmp_path / 'exports'}",
            "--training_steps=800", "--checkpoint_period=200")
    process, log = start_main(args, tmp_path / "first.log")
    try:
        wait_for_checkpoint(process, run_dir, tmp_path / "first.log")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        log.close()
    assert process.returncode == -signal.SIGKILL
    killed_step = complete_checkpoints(run_dir)[-1][0]
    assert 200 <= killed_step < 800
    assert not os.path.exists(tmp_path / "exports")

    result = run_main(*args)
    assert result.returncode == 0, describe(result)
    assert "resumed from" in result.stdout
    resumed = re.search(r"resumed from \S*ckpt-0*(\d+) at frame ([\d,]+)", result.stdout)
    assert resumed, result.stdout
    assert int(resumed.group(1)) == killed_step
    assert int(resumed.group(2).replace(",", "")) == 4 * killed_step
    state = newest_state(run_dir)
    assert state["step"] >= killed_step and state["step"] == 800 and state["finished"] is True
    # Evaluations made after the restored checkpoint were dropped and redone: no duplicates.
    records = read_jsonl(os.path.join(run_dir, "eval.jsonl"))
    steps = [e["step"] for e in records]
    assert steps == sorted(set(steps)) and steps[-1] == 800
    assert os.path.isdir(tmp_path / "exports" / "experts" / "Pong" / "1")
    # Without --save_replay the memory refilled (learning_starts = 200 agent steps) before
    # learning went on: the test plays record that many steps' updates fewer than an
    # uninterrupted run's (800 - 200) / 4, and the report names the run for it.
    assert records[-1]["updates"] == (800 - 200) // 4 - min(200, 800 - killed_step) // 4
    assert records[-1]["skipped_updates"] == 0
    report = run_main("--mode=report", f"--report_runs={run_dir}", f"--report_dir={tmp_path / 'docs'}")
    assert report.returncode == 0, describe(report)
    assert "not made while a resume without its replay refilled it" in (
        tmp_path / "docs" / "experts.md").read_text()


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_cleanly(tmp_path):
    run_dir = str(tmp_path / "run")
    args = (f"--flagfile={SMOKE}", f"--run_dir={run_dir}", f"--export_dir={tmp_path / 'exports'}",
            "--training_steps=100000", "--checkpoint_period=200")
    process, log = start_main(args, tmp_path / "run.log")
    try:
        seen = wait_for_checkpoint(process, run_dir, tmp_path / "run.log")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        log.close()
    output = (tmp_path / "run.log").read_text()
    assert process.returncode == 0, output
    assert "SIGTERM received" in output and "Traceback" not in output
    stopped = re.search(r"stopped at frame ([\d,]+)", output)
    assert stopped, output
    state = newest_state(run_dir)
    assert state["step"] >= seen and state["finished"] is False
    assert int(stopped.group(1).replace(",", "")) == 4 * state["step"]
    assert not os.path.exists(tmp_path / "exports")  # a stopped run exports nothing


@pytest.mark.slow
def test_second_run_on_a_live_run_dir_is_refused_at_once(tmp_path):
    run_dir, export_dir = tmp_path / "run", tmp_path / "exports"
    args = (f"--flagfile={SMOKE}", f"--run_dir={run_dir}", f"--export_dir={export_dir}")
    first, log = start_main(args, tmp_path / "first.log")
    try:
        deadline = time.time() + 60  # until the first has claimed the run directory
        while time.time() < deadline and first.poll() is None:
            try:
                if json.loads((run_dir / ".lock").read_text() or "{}").get("pid") == first.pid:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        # Frozen, the first stays alive (and holds its claim) however slow this machine is.
        first.send_signal(signal.SIGSTOP)
        try:
            # -X importtime: the second process logs every module it imports (on stderr).
            second = subprocess.run([sys.executable, "-X", "importtime", *main_command(*args)[1:]],
                                    cwd=REPO_ROOT, env=subprocess_env(), capture_output=True,
                                    text=True, timeout=120)
        finally:
            first.send_signal(signal.SIGCONT)
        imported = {line.split("|")[-1].strip() for line in second.stderr.splitlines()
                    if line.startswith("import time:")}
        second.stderr = "\n".join(line for line in second.stderr.splitlines()
                                  if not line.startswith("import time:"))
        line = assert_clean_error(second)
        assert f"is in use by process {first.pid} (" in line and f"kill -INT {first.pid}" in line
        assert "amn_tf.main" in line and str(run_dir) in line
        assert "[dqn" not in second.stdout  # it trained nothing
        # Refused at once: before TensorFlow (seconds of import) is even loaded.
        assert "amn_tf.cli" in imported and "tensorflow" not in imported, sorted(imported)
        first.wait(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    output = (tmp_path / "first.log").read_text()
    assert first.returncode == 0, output
    assert os.listdir(export_dir / "experts" / "Pong") == ["1"]


# ------------------------------------------------------------------ flagfiles
FLAGFILES = sorted(glob.glob(os.path.join(FLAGS_DIR, "*.flags")))

def test_flagfiles_exist():
    assert {"smoke.flags", "expert.flags", "expert_cpu.flags"} <= {os.path.basename(f) for f in FLAGFILES}


@pytest.mark.parametrize("flagfile", FLAGFILES, ids=os.path.basename)
def test_every_flagfile_parses_and_builds(flagfile):
    with open(flagfile) as handle:
        lines = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    mode = next(line.split("=", 1)[1] for line in lines if line.startswith("--mode="))
    if mode == "multitask_dqn":  # a recipe for any set of games: give two
        extra = ["--games=Pong,Boxing"]
    else:
        extra = [] if any(line.startswith("--game=") for line in lines) else ["--game=Pong"]
    with parsed_flags(f"--flagfile={flagfile}", *extra) as values:
        built = cli.build(values)
    built = json.loads(json.dumps({"type": type(built).__name__, **dataclasses.asdict(built)}, default=str))
    types_by_mode = {"dqn": "DqnConfig", "amn": "AmnConfig", "transfer": "TransferConfig",
                     "multitask_dqn": "MultitaskDqnConfig",
                     "eval": "EvalRunConfig", "report": "ReportConfig"}
    assert built["type"] == types_by_mode[mode]
    if mode in ("dqn", "transfer"):  # DqnConfig fields are named after their flags
        dqn = built["dqn"] if mode == "transfer" else built
        assert dqn["game"] == "Pong" if extra else dqn["game"]
        for line in lines:  # integer settings reach the config unchanged
            name, _, value = line[2:].partition("=")
            if name in dqn and value.isdigit():
                assert dqn[name] == int(value), name


def test_smoke_recipes_never_export_into_the_shipped_tree():
    """A throw-away run must not add an untrained expert to what --mode=amn distils."""
    smoke = [f for f in FLAGFILES if "smoke" in os.path.basename(f)]
    assert smoke
    for flagfile in smoke:
        with open(flagfile) as handle:
            export_dirs = [line.strip().split("=", 1)[1] for line in handle
                           if line.startswith("--export_dir=")]
        assert export_dirs, f"{flagfile} exports into the default saved_models/"
        assert not os.path.normpath(export_dirs[-1]).startswith("saved_models"), flagfile


# ----------------------------------------------------------------- bad inputs
BAD_INPUTS = {
    # name: (arguments, text the error line must contain)
    "unknown_game": (["--mode=dqn", "--game=Pongg"], "did you mean Pong"),
    "missing_saved_model": (["--mode=eval", "--saved_model={tmp}/missing/1"], "does not exist"),
    "saved_model_of_another_game": (["--mode=eval", "--saved_model={expert}", "--game=Breakout"],
                                    "not Breakout"),
    "epsilon_end_above_start": (["--mode=dqn", "--game=Pong", "--epsilon_start=0.1",
                                 "--epsilon_end=0.5"], "--epsilon_end=0.5 is above"),
    "learning_starts_not_below_training_steps": (
        ["--mode=dqn", "--game=Pong", "--training_steps=500", "--learning_starts=500"],
        "--learning_starts=500"),
    "amn_tau_zero": (["--mode=amn", "--tau=0"], "--tau must be > 0"),
    "beta_infinite": (["--mode=amn", "--beta=inf"], "--beta=inf is not a finite number"),
    "learning_rate_nan": (["--mode=dqn", "--game=Pong", "--learning_rate=nan"],
                          "--learning_rate=nan is not a finite number"),
    "report_ranking_missing": (["--mode=report", "--report_runs={tmp}", "--report_rankings={tmp}/r.json"],
                               "--report_rankings: {tmp}/r.json does not exist"),
    "report_ranking_without_runs": (["--mode=report", "--report_rankings={expert}/saved_model.pb"],
                                    "--report_rankings goes beside transfer runs"),
    "report_rates_without_per_minute": (["--mode=report", "--report_runs={tmp}", "--report_rates={tmp}/r.json"],
                                        "--report_rates goes with --report_per_minute"),
    "report_rates_missing": (["--mode=report", "--report_runs={tmp}", "--report_per_minute",
                              "--report_rates={tmp}/r.json"], "--report_rates: {tmp}/r.json does not exist"),
    "report_reach_score_not_a_number": (["--mode=report", "--report_runs={tmp}",
                                         "--report_reach_scores=12,high"],
                                        "--report_reach_scores: 'high' is not a number"),
    "keep_best_on_amn": (["--mode=amn", "--keep_best"], "--keep_best is for --mode=dqn and --mode=transfer"),
    "train_minutes_zero": (["--mode=amn", "--train_minutes=0"], "--train_minutes=0.0 must be above 0"),
    "train_minutes_on_eval": (["--mode=eval", "--saved_model={expert}", "--train_minutes=5"],
                              "--train_minutes budgets a training, not --mode=eval"),
    "no_mode": (["--game=Pong"], "--mode is required"),
    "stray_argument": (["--mode=dqn", "--game=Pong", "oops"], "unexpected arguments"),
}


def check_bad_input(run, name, tmp_path, expert) -> None:
    arguments, expected = BAD_INPUTS[name]
    run_dir = tmp_path / "run"
    arguments = [a.format(tmp=tmp_path, expert=expert) for a in arguments]
    result = run(*arguments, f"--run_dir={run_dir}", f"--export_dir={tmp_path / 'exports'}")
    line = assert_clean_error(result)
    assert expected.format(tmp=tmp_path) in line, line
    assert not run_dir.exists()  # refused before anything was written
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_gives_one_clean_error_line(name, tmp_path, pong_expert):
    check_bad_input(main_in_process, name, tmp_path, pong_expert.path)


# Through a real process: a mistake found by cli.build, one main itself finds, and one found
# only once the mode runs (a SavedModel error, with amn_tf.export imported by the mode).
@pytest.mark.slow
@pytest.mark.parametrize("name", ["unknown_game", "stray_argument", "missing_saved_model"])
def test_main_process_prints_a_bad_input_as_one_clean_error_line(name, tmp_path, pong_expert):
    check_bad_input(run_main, name, tmp_path, pong_expert.path)


def check_unknown_flag(run, tmp_path) -> None:
    flagfile = tmp_path / "bad.flags"
    flagfile.write_text("--mode=dqn\n--game=Pong\n--no_such_flag=3\n")
    result = run(f"--flagfile={flagfile}", f"--run_dir={tmp_path / 'run'}")
    assert result.returncode != 0, describe(result)
    assert "Traceback" not in result.stderr + result.stdout, describe(result)
    assert "no_such_flag" in result.stderr
    assert not (tmp_path / "run").exists()


def test_flagfile_with_unknown_flag(tmp_path):
    check_unknown_flag(main_in_process, tmp_path)


@pytest.mark.slow
def test_main_process_refuses_a_flagfile_with_an_unknown_flag(tmp_path):
    check_unknown_flag(run_main, tmp_path)


@pytest.mark.slow
def test_profile_steps_write_a_trace_on_cpu(tmp_path):
    run_dir = tmp_path / "run"
    result = run_main("--flagfile=flags/smoke.flags", f"--run_dir={run_dir}",
                      f"--export_dir={tmp_path / 'exports'}", "--profile_steps=20,25")
    assert result.returncode == 0, describe(result)
    assert "[profile] trace of updates 20..24" in result.stdout
    traces = list((run_dir / "tensorboard" / "plugins" / "profile").glob("*/*.xplane.pb"))
    assert traces and traces[0].stat().st_size > 0


@pytest.mark.parametrize("steps, message", [("20,10", "need 0 <= START < STOP"),
                                            ("10,5000", "is outside the run"),
                                            ("a,b", "give two integers")])
def test_bad_profile_steps(tmp_path, steps, message):
    result = main_in_process("--flagfile=flags/smoke.flags", f"--run_dir={tmp_path / 'run'}",
                      f"--profile_steps={steps}")
    line = assert_clean_error(result)
    assert message in line


@pytest.mark.slow
def test_report_on_an_expert_run_gives_its_curve(smoke_run, tmp_path):
    result = run_main("--mode=report", f"--report_runs={smoke_run.run_dir}",
                      f"--report_dir={tmp_path / 'docs'}")
    assert result.returncode == 0, describe(result)
    table = (tmp_path / "docs" / "experts.md").read_text()
    assert "| Pong | run | 1,600 |" in table and "| Pong | run | 2,400 |" in table
    assert (tmp_path / "docs" / "expert_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "Recipes compared" not in table  # one run of one recipe: nothing to compare


@pytest.mark.slow
def test_report_compares_recipes_with_the_savedmodel_score_of_the_run_that_made_it(smoke_run, tmp_path):
    """A real eval JSON names the run that trained the SavedModel; the report puts its score
    beside that run's recipe, and a second recipe (the same run with another n_step in its
    flags) beside it with what differs."""
    evaluated = tmp_path / "eval.json"
    result = run_main("--mode=eval", f"--saved_model={smoke_run.run_dir}", "--eval_episodes=1",
                      "--eval_envs=1", "--eval_max_steps=50", f"--output_json={evaluated}")
    assert result.returncode == 0, describe(result)
    payload = json.loads(evaluated.read_text())
    # The run lies outside the project: named by its name, never by this machine's absolute path.
    assert payload["run_dir"] == os.path.basename(smoke_run.run_dir) and payload["frames_trained"] == 2400
    other = tmp_path / "nstep2-seed0"
    shutil.copytree(smoke_run.run_dir, other, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    flags_json = json.loads((other / "flags.json").read_text())
    flags_json["n_step"] = flags_json["n_step"] + 1
    (other / "flags.json").write_text(json.dumps(flags_json))
    result = run_main("--mode=report", f"--report_runs={smoke_run.run_dir},{other}",
                      f"--report_evals={evaluated}", "--report_reach_scores=-100,100",
                      f"--report_dir={tmp_path / 'docs'}")
    assert result.returncode == 0, describe(result)
    table = (tmp_path / "docs" / "experts.md").read_text()
    compared = table.split("# Recipes compared")[1]
    assert "reference: run" in compared and "Reach scores: -100, 100 (given" in compared
    score = payload["results"][0]["mean"]
    reference = next(line for line in compared.splitlines() if line.startswith("| run |"))
    # First test play (1,600 frames = 400 agent steps, 200 after learning_starts: 50 updates at
    # update period 4) is above -100; none reaches 100; SavedModel: the eval above, 1 episode.
    cells = [c.strip() for c in reference.strip("|").split("|")]
    assert cells[:3] == ["run", "1", "reference"] and cells[4] == "not reached", cells
    assert re.fullmatch(r"1,600 \(50; \d+ min\)", cells[3]), cells  # and the minutes trained by then
    assert cells[-1] == f"{score:.1f}, 1 episodes at 2,400"
    changed = next(line for line in compared.splitlines() if line.startswith("| nstep2 |"))
    assert f"n_step {flags_json['n_step']} ({flags_json['n_step'] - 1})" in changed
    assert changed.rstrip().endswith("| - |")  # no eval JSON of it
    assert (tmp_path / "docs" / "recipe_curves.png").read_bytes()[:4] == b"\x89PNG"
