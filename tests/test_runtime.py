"""runtime: progress lines at the recent rate, and the claim on a run directory that refuses a
second process while the first lives and never outlives a killed one."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, subprocess_env

from amn_tf import checkpoints, jsonl, parts, rundirs, runtime


# ------------------------------------------------------------------ progress
class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def report(progress, clock, step, seconds):
    clock.now += seconds
    fps = progress.frames_per_second(step)
    return fps, progress.line(step, fps)


def eta_of(line) -> int:
    minutes, seconds = re.search(r"ETA (\d+)m(\d+)s", line).groups()
    return 60 * int(minutes) + int(seconds)


def test_eta_and_frames_per_second_follow_the_slow_phase_not_the_replay_filling():
    clock = FakeClock()
    progress = parts.Progress("dqn Pong", total_steps=300_000, start_step=0, clock=clock)
    step = 0
    for _ in range(12):  # 2 minutes of replay filling at 1,000 steps/s, a line every 10 s
        step += 10_000
        report(progress, clock, step, 10)
    for _ in range(30):  # then learning at 50 steps/s (200 frames/s) for 5 minutes
        step += 500
        fps, line = report(progress, clock, step, 10)
    assert fps == pytest.approx(200.0)
    assert "200 frames/s" in line
    remaining = (300_000 - step) / 50  # 3,300 s at the slow rate
    assert abs(eta_of(line) - remaining) <= 1, line
    # The average rate since the start (the old ETA) promises under a quarter of that.
    assert (300_000 - step) / (step / 420) < remaining / 4


def test_the_first_line_after_learning_starts_has_the_learning_rate_only():
    clock = FakeClock()
    progress = parts.Progress("amn", total_steps=40_000, start_step=0, clock=clock)
    plain = parts.Progress("amn", total_steps=40_000, start_step=0, clock=clock)  # no phase mark
    clock.now += 20  # 5,000 steps of replay filling at 250 steps/s ...
    progress.phase_started(5_000)  # ... then learning, at 50 steps/s
    fps, line = report(progress, clock, 10_000, 100)  # the first line, 100 s later
    assert fps == pytest.approx(4 * 50) and eta_of(line) == 30_000 / 50
    # Without the mark the same line averages the filling in: 10,000 steps in 120 s.
    assert plain.frames_per_second(10_000) == pytest.approx(4 * 10_000 / 120)


def test_recent_rate_covers_the_window_and_at_least_the_previous_line():
    clock = FakeClock()
    progress = parts.Progress("amn", total_steps=10_000, start_step=1_000, clock=clock, window=60)
    assert progress.line(1_000, 0.0).endswith("ETA ?")  # no rate yet
    fps, _ = report(progress, clock, 1_100, 300)  # lines further apart than the window:
    assert fps == pytest.approx(4 * 100 / 300)  # the rate since the previous one
    report(progress, clock, 1_200, 30)  # 100 steps in 30 s, then 300 in 30 s
    fps, line = report(progress, clock, 1_500, 30)
    assert fps == pytest.approx(4 * 400 / 60)  # both lines of the last 60 s
    assert eta_of(line) == round((10_000 - 1_500) / (400 / 60))
    fps, _ = report(progress, clock, 1_500, 61)  # the 400 steps fell out of the window
    assert fps == 0.0


def test_the_eta_counts_the_test_plays_still_to_come():
    clock = FakeClock()
    asked = []

    def plays(each):
        def test_plays(step, end):
            asked.append((step, end))
            return 2, each
        return test_plays

    progress = parts.Progress("amn", total_steps=1_000, start_step=0, clock=clock, test_plays=plays(30.0))
    _, line = report(progress, clock, 100, 10)  # 10 steps/s: 90 s of training to step 1,000
    assert "ETA 2m30s incl. 2 test plays |" in line + " |" and asked[-1] == (100, 1_000)
    progress = parts.Progress("amn", total_steps=1_000, start_step=0, clock=clock, test_plays=plays(None))
    _, line = report(progress, clock, 100, 10)  # none timed yet: named, not guessed
    assert line.endswith("ETA 1m30s + 2 test plays")
    # a time budget that ends the run first: the test plays up to where the budget will end it
    progress = parts.Progress("amn", total_steps=1_000, start_step=0, clock=clock,
                              seconds_left=lambda: 20.0, test_plays=plays(None))
    _, line = report(progress, clock, 100, 10)
    assert line.endswith("ETA 0m20s + 2 test plays") and asked[-1] == (100, 300)


def test_print_returns_the_printed_rate(capsys):
    clock = FakeClock()
    progress = parts.Progress("dqn Pong", total_steps=1_000, start_step=0, clock=clock)
    clock.now += 2
    assert progress.print(100, "eval None") == pytest.approx(200.0)
    assert capsys.readouterr().out == ("[dqn Pong] frames 400/4,000 (10%) | 200 frames/s | "
                                       "ETA 0m18s | eval None\n")


# ------------------------------------------------------------ run directory claim
HOLDER = """
import sys, time
from amn_tf import rundirs
rundirs.lock_run_dir(sys.argv[1])
print("claimed", flush=True)
time.sleep(120)
"""


def start_holder(run_dir):
    """A process that claims ``run_dir`` through the library and sleeps."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], cwd=REPO_ROOT,
                               env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    if process.stdout.readline().strip() != "claimed":
        process.kill()
        pytest.fail(f"the holder did not claim {run_dir} (exit {process.wait()})")
    return process


def held_by_another_open_file(run_dir) -> bool:
    """Whether the claim is held (flock is per open file, so this process's own claim counts)."""
    fd = os.open(os.path.join(run_dir, rundirs.LOCK_FILE), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_claimed_run_dir_is_refused_naming_the_holder_until_it_is_killed(tmp_path):
    run_dir = tmp_path / "run"
    holder = start_holder(run_dir)
    try:
        with open(run_dir / rundirs.LOCK_FILE) as handle:
            assert json.load(handle)["pid"] == holder.pid
        with pytest.raises(rundirs.RunError) as refused:
            rundirs.prepare_run_dir(str(run_dir), {"mode": "dqn", "game": "Pong"}, {})
        message = str(refused.value)
        assert "\n" not in message
        assert f"in use by process {holder.pid} (" in message and f"kill -INT {holder.pid}" in message
        assert "-c import sys, time from amn_tf import rundirs" in message  # its command line
        assert not (run_dir / rundirs.RUN_INFO).exists()  # nothing written by the refused one
        with pytest.raises(rundirs.RunError, match=f"process {holder.pid}"):
            rundirs.check_run_dir_free(str(run_dir))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # kill -9 leaves the file and its old PID behind, but no lock: the next run is accepted.
    with rundirs.run_dir_claims():
        rundirs.prepare_run_dir(str(run_dir), {"mode": "dqn", "game": "Pong"}, {})
        with open(run_dir / rundirs.LOCK_FILE) as handle:
            assert json.load(handle)["pid"] == os.getpid()
        assert held_by_another_open_file(run_dir)
    assert not held_by_another_open_file(run_dir)


def test_claims_are_reentrant_in_a_process_and_released_when_the_train_function_ends(tmp_path):
    run_dir = str(tmp_path / "run")
    held = []

    def train(fail=False):  # as runner.launch claims
        with rundirs.run_dir_claims():
            rundirs.prepare_run_dir(run_dir, {"mode": "dqn", "game": "Pong"}, {})
            rundirs.lock_run_dir(run_dir)  # re-entrant: a second claim in the process does nothing
            held.append(held_by_another_open_file(run_dir))
            if fail:
                raise runtime.NonFiniteError("loss is NaN")

    train()
    assert not held_by_another_open_file(run_dir)
    with pytest.raises(runtime.NonFiniteError):
        train(fail=True)  # the same run directory again in the same process, raising
    assert held == [True, True]
    assert not held_by_another_open_file(run_dir)
    with rundirs.run_dir_claims():  # a claim taken before a train function outlives it
        rundirs.lock_run_dir(run_dir)
        train()
        assert held_by_another_open_file(run_dir)
    assert not held_by_another_open_file(run_dir)
    rundirs.check_run_dir_free(run_dir)  # claims nothing
    assert not held_by_another_open_file(run_dir)


HOLDER_OF_A_RUN = """
import sys, time
from amn_tf import rundirs
for run_dir in sys.argv[1:]:
    rundirs.prepare_run_dir(run_dir, {"mode": "held"}, {})
print("claimed", flush=True)
time.sleep(120)
"""

MODES = {  # arguments (A: a run directory held by another process, B: B/Breakout held)
    "transfer": ["--mode=transfer", "--game=Pong", "--init=random", "--run_dir={A}"],
    "amn": ["--mode=amn", "--experts={A}", "--run_dir={A}"],
    "multitask_dqn": ["--mode=multitask_dqn", "--games=Pong,Breakout", "--run_dir={A}"],
    "dqn_games": ["--mode=dqn", "--games=Pong,Breakout", "--run_dir={B}"],
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_training_mode_refuses_a_run_dir_in_use(mode, tmp_path):
    held = [tmp_path / "A", tmp_path / "B" / "Breakout"]
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_OF_A_RUN, *map(str, held)],
                              cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        args = [a.format(A=held[0], B=held[1].parent) for a in MODES[mode]]
        result = subprocess.run([sys.executable, "-m", "amn_tf.main", *args], cwd=REPO_ROOT,
                                env=subprocess_env(), capture_output=True, text=True, timeout=120)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("amn_tf: error: run directory ") and f"process {holder.pid} (" in line
    assert not (tmp_path / "B" / "Pong").exists()  # the fan-out checks every game before any
    assert sorted(os.listdir(held[0])) == [".lock", "flags.json", "flags_history.jsonl", "run.json"]


def test_flags_history_keeps_each_invocation_that_changed_a_flag(tmp_path):
    run_dir = str(tmp_path)
    flags = {"learning_rate": 0.0001, "n_step": 3, "training_steps": 100, "games": ("Pong",)}
    rundirs.record_flags(run_dir, flags)
    rundirs.record_flags(run_dir, dict(flags))  # a plain resume: nothing new
    history = jsonl.read(os.path.join(run_dir, rundirs.FLAGS_HISTORY))
    assert history == [{"from_step": 0, "flags": {**flags, "games": ["Pong"]}}]
    # Resumed from the newest complete checkpoint (step 400; a partial one at 600 is not one)
    # with another learning rate and budget.
    for step, complete in ((400, True), (600, False)):
        path = tmp_path / "checkpoints" / f"{checkpoints.PREFIX}{step:012d}"
        path.mkdir(parents=True)
        if complete:
            (path / checkpoints.SENTINEL).write_text("")
    rundirs.record_flags(run_dir, {**flags, "learning_rate": 0.0002, "training_steps": 200})
    assert json.loads((tmp_path / "flags.json").read_text())["learning_rate"] == 0.0002
    assert rundirs.flag_changes(run_dir, ("learning_rate", "n_step")) == [
        (400, {"learning_rate": (0.0001, 0.0002)})]
    assert rundirs.flag_changes(run_dir, ("n_step",)) == []


def test_a_resume_with_changed_flags_says_which_in_one_line(tmp_path, capsys):
    """A resume that trains on with another value (a default changed since the run began, or a
    flag given anew) names each changed flag and its recorded value; the budget and a plain
    resume are silent."""
    identity = {"mode": "amn", "games": ["Pong"]}
    flags = {"amn_learning_rate": 0.00025, "amn_steps": 40_000, "tau": "auto"}
    rundirs.prepare_run_dir(str(tmp_path), identity, flags)
    rundirs.release_run_dir(str(tmp_path))
    capsys.readouterr()
    for again, said in (({**flags, "amn_steps": 96_000}, ""),
                        ({**flags, "amn_steps": 96_000, "amn_learning_rate": 0.001, "tau": "1.0"},
                         f"[amn_tf] resuming {tmp_path} with flags changed since its last invocation: "
                         "--amn_learning_rate=0.001 (was 0.00025), --tau=1.0 (was auto); "
                         "flags_history.jsonl keeps which agent steps each trained\n"),
                        ({**flags, "amn_steps": 96_000, "amn_learning_rate": 0.001, "tau": "1.0"}, "")):
        rundirs.prepare_run_dir(str(tmp_path), identity, again)
        rundirs.release_run_dir(str(tmp_path))
        assert capsys.readouterr().out == said


def _complete_checkpoint(run_dir, step: int) -> None:
    path = run_dir / "checkpoints" / f"{checkpoints.PREFIX}{step:012d}"
    path.mkdir(parents=True)
    (path / checkpoints.SENTINEL).write_text("")


def test_a_resume_that_fails_before_its_first_checkpoint_takes_its_flags_back(tmp_path):
    identity, flags = {"mode": "dqn", "game": "Pong"}, {"learning_rate": 0.0001, "training_steps": 100}
    rundirs.prepare_run_dir(str(tmp_path), identity, flags)
    _complete_checkpoint(tmp_path, 100)
    rundirs.release_run_dir(str(tmp_path))
    records = {name: (tmp_path / name).read_bytes() for name in ("flags.json", rundirs.FLAGS_HISTORY)}
    changed = {**flags, "learning_rate": 0.0002, "training_steps": 200}
    # Fails (here: a bad expert, a NaN loss...) before writing a checkpoint: nothing it trained was
    # kept, so the run's record is what it was.
    with pytest.raises(ValueError), rundirs.run_dir_claims():
        rundirs.prepare_run_dir(str(tmp_path), identity, changed)
        assert json.loads((tmp_path / "flags.json").read_text())["learning_rate"] == 0.0002
        raise ValueError("failed")
    assert {name: (tmp_path / name).read_bytes() for name in records} == records
    # Every checkpoint failing to load is told which flags the resume changed (not the budget).
    with pytest.raises(checkpoints.NoUsableCheckpoint) as raised, rundirs.run_dir_claims():
        rundirs.prepare_run_dir(str(tmp_path), identity, changed)
        raise checkpoints.NoUsableCheckpoint(str(tmp_path / "checkpoints"), "ckpt-100: shape")
    message = str(raised.value)
    assert message.startswith(f"no usable checkpoint in {tmp_path / 'checkpoints'}: every one")
    assert "this resume changed --learning_rate=0.0002 (trained with 0.0001): resume with the run's " \
        "flags (its flags.json)" in message and "training_steps" not in message
    assert {name: (tmp_path / name).read_bytes() for name in records} == records
    # Failing after it wrote a checkpoint: its flags trained that checkpoint, their record stays.
    with pytest.raises(ValueError), rundirs.run_dir_claims():
        rundirs.prepare_run_dir(str(tmp_path), identity, changed)
        _complete_checkpoint(tmp_path, 150)
        raise ValueError("failed later")
    assert json.loads((tmp_path / "flags.json").read_text())["learning_rate"] == 0.0002
    assert rundirs.flag_changes(str(tmp_path), ("learning_rate",)) == [
        (100, {"learning_rate": (0.0001, 0.0002)})]


def test_flags_history_drops_a_line_torn_by_a_crash(tmp_path):
    rundirs.record_flags(str(tmp_path), {"learning_rate": 0.0001})
    with open(tmp_path / rundirs.FLAGS_HISTORY, "a") as handle:
        handle.write('{"from_step": 0, "fla')  # a crash in the middle of a write
    rundirs.record_flags(str(tmp_path), {"learning_rate": 0.0002})
    assert rundirs.flag_changes(str(tmp_path), ("learning_rate",)) == [
        (0, {"learning_rate": (0.0001, 0.0002)})]
    assert len((tmp_path / rundirs.FLAGS_HISTORY).read_text().splitlines()) == 2


def test_flags_history_starts_from_the_flags_json_of_an_older_run(tmp_path):
    (tmp_path / "flags.json").write_text(json.dumps({"learning_rate": 0.0001}))
    rundirs.record_flags(str(tmp_path), {"learning_rate": 0.00005})
    assert rundirs.flag_changes(str(tmp_path), ("learning_rate",)) == [
        (0, {"learning_rate": (0.0001, 0.00005)})]


def test_records_name_a_run_relative_to_the_project_or_by_its_name(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "runs" / "dqn-Pong").mkdir(parents=True)
    monkeypatch.chdir(project)
    assert rundirs.portable_path(str(project / "runs" / "dqn-Pong")) == os.path.join("runs", "dqn-Pong")
    assert rundirs.portable_path("runs/dqn-Pong/") == os.path.join("runs", "dqn-Pong")
    assert rundirs.portable_path("/work/runs/recipes-7M/Pong-fast-seed1") == "Pong-fast-seed1"
    assert rundirs.portable_path(str(tmp_path / "elsewhere" / "run")) == "run"
    assert rundirs.portable_path("/work/runs/exports/transfer/Breakout-random/1", keep=3) == \
        os.path.join("transfer", "Breakout-random", "1")


def test_a_record_names_every_absolute_path_in_it_portably(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    record = {
        "run_dir": str(project / "runs" / "experts" / "Boxing"),  # inside the project: relative
        "export_dir": "/machine/runs/exports-fast",  # elsewhere: by its name
        "experts": {"Pong": "/machine/runs/exports-fast/experts/Pong/2", "Boxing": "saved_models/experts/Boxing/1"},
        "games": ["Pong", 3, None, True],
        "command": "python -m amn_tf.main --mode=eval --output_json=/machine/testplay/Pong.json --x 1 /m/y",
        "note": "a sentence with a/slash in it, 900 frames /s",
    }
    assert rundirs.portable_record(record) == {
        "run_dir": os.path.join("runs", "experts", "Boxing"),
        "export_dir": "exports-fast",
        "experts": {"Pong": os.path.join("experts", "Pong", "2"), "Boxing": "saved_models/experts/Boxing/1"},
        "games": ["Pong", 3, None, True],
        "command": "python -m amn_tf.main --mode=eval --output_json=Pong.json --x 1 y",
        "note": "a sentence with a/slash in it, 900 frames /s",
    }
    assert rundirs.portable_record(rundirs.portable_record(record)) == rundirs.portable_record(record)
