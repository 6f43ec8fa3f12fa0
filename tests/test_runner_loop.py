"""The one run loop (``runner.Runner``) driven in-process by a scripted agent: update credit,
target sync, stop and resume, export exactly once, and the agent check. No emulator, no
subprocess: the agent is a ``runner.Agent`` whose acting adds a fixed number of agent steps and
whose "network" is a pair of variables."""

import dataclasses
import json
import os
import shutil
import signal
import time

import numpy as np
import pytest
import tensorflow as tf

from amn_tf import parts, replay, runner


class CountingAgent(runner.Agent):
    """Each ``act`` adds ``per_act`` agent steps (as ``per_act`` emulators would) and draws one
    number from the acting generator into ``drawn`` (so a resume that lost the generator's
    state would show); each learner update adds 1 to ``weight``; ``update_target`` records the
    step it came at; test play scores the weight; ``export`` writes the weight it saw."""

    label, games = "counting", ["Pong"]

    def __init__(self, export_base, per_act=3, stop_at=None):
        self.export_base = export_base
        self.per_act = per_act
        self.stop_at = stop_at  # SIGTERM to this process when acting at this step
        self.memories = [replay.ReplayMemory(64, 1, seed=0)]  # a real (tiny) memory, saved with the run
        self.weight = tf.Variable(0, dtype=tf.int64)
        self.drawn = tf.Variable(0.0, dtype=tf.float64)
        self.learner = self
        self.updates = tf.Variable(0, dtype=tf.int64)
        self.skipped = tf.Variable(0, dtype=tf.int64)
        self.trackables = {"weight": self.weight, "drawn": self.drawn, "updates": self.updates}
        self.rng = np.random.default_rng(0)
        self.step_now = 0
        self.syncs, self.exports, self.closed = [], [], 0

    # the learner
    def step(self):
        self.weight.assign_add(1)
        self.updates.assign_add(1)
        return {"loss": 1.0}

    def update_target(self):
        self.syncs.append(self.step_now + self.per_act)  # the step the runner has just reached

    # acting and test play
    def act(self, step):
        self.step_now = step
        self.drawn.assign_add(self.rng.uniform())
        if step == self.stop_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return self.per_act

    def observe(self):
        return [("Pong", -21.0)] if self.step_now == 3 else []

    def train_scalars(self, metrics, fps):
        return {"charts/SPS": fps / 4, "charts/epsilon": 0.25,
                **({"losses/td_loss": metrics["loss"]} if metrics else {})}

    def evaluate(self, step, plays_so_far):
        return {"step": step, "frames": 4 * step, "mean": float(self.weight.numpy())}, {}

    def export(self, path, record, step, run_dir):
        os.makedirs(path)
        with open(os.path.join(path, "weight.txt"), "w") as handle:
            handle.write(str(int(self.weight.numpy())))
        self.exports.append((step, int(self.weight.numpy())))

    def close(self):
        self.closed += 1


def _schedule(total_steps=30, save_replay=True, **overrides):
    settings = dict(total_steps=total_steps, learning_starts=6, update_period=4, log_period=1000,
                    eval_period=12, checkpoint_period=9, target_update_period=10,
                    save_replay=save_replay)
    return runner.Schedule(**{**settings, **overrides})


def _run(tmp_path, name, schedule, **agent_args):
    agent = CountingAgent(str(tmp_path / "exports" / name), **agent_args)
    summary = runner.Runner(str(tmp_path / name), agent, schedule).run()
    return agent, summary


def _history(tmp_path, name):
    with open(tmp_path / name / "eval.jsonl") as handle:
        return [json.loads(line) for line in handle]


def test_update_credit_and_target_sync_follow_the_schedule(tmp_path):
    agent, summary = _run(tmp_path, "run", _schedule())
    # Acting at steps 0, 3, ..., 27 (3 agent steps each) to 30. Learning starts at step 6:
    # the acts at 6, 9, ..., 27 (8 acts x 3 steps = 24 steps) earn 24 / 4 = 6 updates.
    assert int(agent.updates.numpy()) == int(agent.weight.numpy()) == 6
    # Target syncs where the step crosses a multiple of 10: 9 -> 12, 18 -> 21, 27 -> 30.
    assert agent.syncs == [12, 21, 30]
    # Test plays where it crosses 12 (at 12) and 24 (at 24), then the final one at 30, each
    # recording the updates made by then: (12-6)/4 = 1.5 -> 1; (24-6)/4 = 4.5 -> 4; 6.
    assert [(r["step"], r["updates"]) for r in _history(tmp_path, "run")] == [(12, 1), (24, 4), (30, 6)]
    # One export, of the final network, and the agent closed once.
    assert agent.exports == [(30, 6)] and agent.closed == 1
    assert summary["export"].endswith(os.path.join("run", "1"))


class SlowTestPlays(CountingAgent):
    def evaluate(self, step, plays_so_far):
        time.sleep(0.15)
        return super().evaluate(step, plays_so_far)


def test_each_test_play_records_what_it_took_so_training_time_can_be_told_apart(tmp_path):
    agent = SlowTestPlays(str(tmp_path / "exports" / "run"))
    runner.Runner(str(tmp_path / "run"), agent, _schedule()).run()
    history = _history(tmp_path, "run")
    assert len(history) == 3 and all(0.15 <= r["test_play_seconds"] < 5 for r in history)
    # wall_seconds runs to the end of each test play, so it holds every test play so far
    # (each rounded to 0.1 s)
    for index, record in enumerate(history):
        assert record["wall_seconds"] >= 0.15 * (index + 1) - 0.05


class SlowActs(CountingAgent):
    """Each act takes 20 ms of training time; each test play 200 ms (not training time). Both
    wait on the ``fake_clock`` fixture's clock, which only they move: the runner's time budget is
    then exact arithmetic, whatever else the machine is doing (with real sleeps, a worker of a
    loaded machine could take more than the budget's slack over one act)."""

    def __init__(self, *args, clock, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = clock

    def act(self, step):
        self.clock.sleep(0.02)
        return super().act(step)

    def evaluate(self, step, plays_so_far):
        self.clock.sleep(0.2)
        return super().evaluate(step, plays_so_far)


class FakeClock:
    """Seconds that pass only when ``sleep`` is called."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


@pytest.fixture
def fake_clock(monkeypatch):
    """The runner's clock (its ``time.monotonic``) replaced by a ``FakeClock``."""
    clock = FakeClock()
    monkeypatch.setattr(runner, "time", type("FakeTime", (), {"monotonic": staticmethod(clock.monotonic)}))
    return clock


def _training_seconds(run_dir) -> float:
    state = runner.RunState.from_json(json.loads((run_dir / "checkpoints" / sorted(
        os.listdir(run_dir / "checkpoints"))[-1] / "state.json").read_text()))
    return state.wall_seconds - state.test_play_seconds


def test_train_minutes_ends_the_run_on_training_time_not_test_play_time(tmp_path, capsys, fake_clock):
    budget = 0.4  # seconds: 20 acts of 20 ms, with a 200 ms test play every 4 acts
    schedule = _schedule(total_steps=30_000, eval_period=12, checkpoint_period=30_000, train_seconds=budget)
    agent = SlowActs(str(tmp_path / "exports" / "run"), clock=fake_clock)
    summary = runner.Runner(str(tmp_path / "run"), agent, schedule).run()
    out = capsys.readouterr().out
    assert "--train_minutes=0.00666667 reached at frame" in out
    history = _history(tmp_path, "run")
    step = history[-1]["step"]
    assert 12 * 3 <= step < 30_000 and len(history) >= 4  # short of the step budget, test plays between
    trained = _training_seconds(tmp_path / "run")
    # ended by the first act at the budget (20 acts; 21 when the clock's float sum falls short)
    assert budget <= trained <= budget + 0.02 + 1e-6 and step in (60, 63)
    # the test plays took as long as the training again, and did not count
    assert sum(r["test_play_seconds"] for r in history) == pytest.approx(0.2 * len(history))
    assert summary["time_budget_minutes"] == pytest.approx(budget / 60)
    assert agent.exports == [(step, int(agent.weight.numpy()))]
    # The same command again: finished, nothing trained or exported.
    again = SlowActs(str(tmp_path / "exports" / "run"), clock=fake_clock)
    runner.Runner(str(tmp_path / "run"), again, schedule).run()
    assert "run already finished" in capsys.readouterr().out and again.exports == []
    # More minutes train it on, from where it ended, to the new budget, and export a new version.
    more = SlowActs(str(tmp_path / "exports" / "run"), clock=fake_clock)
    longer = dataclasses.replace(schedule, train_seconds=2 * budget)
    summary = runner.Runner(str(tmp_path / "run"), more, longer).run()
    assert "extending the finished run" in capsys.readouterr().out
    assert 2 * budget <= _training_seconds(tmp_path / "run") <= 2 * budget + 0.02 + 1e-6
    assert more.exports and more.exports[0][0] > step and summary["export"].endswith(os.path.join("run", "2"))


class Recording(SlowActs):
    """Records the fraction of the run the runner reports before each round of updates."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fractions = []

    def progress(self, fraction):
        self.fractions.append(fraction)


def test_progress_is_the_budgets_steps_or_its_training_time_whichever_is_further(tmp_path, fake_clock):
    # A step budget: before the updates of the acts at 6, 9, ..., 27 (learning from step 6).
    agent = Recording(str(tmp_path / "exports" / "steps"), clock=fake_clock)
    runner.Runner(str(tmp_path / "steps"), agent, _schedule()).run()
    assert agent.fractions == pytest.approx([6 / 30, 9 / 30, 12 / 30, 15 / 30, 18 / 30, 21 / 30, 24 / 30, 27 / 30])
    # A time budget far shorter than the steps: the training time's fraction, rising to about 1
    # (20 ms acts in a 0.4 s budget, 200 ms test plays that do not count).
    timed = Recording(str(tmp_path / "exports" / "timed"), clock=fake_clock)
    schedule = _schedule(total_steps=30_000, eval_period=12, checkpoint_period=30_000, train_seconds=0.4)
    runner.Runner(str(tmp_path / "timed"), timed, schedule).run()
    fractions = timed.fractions
    # The first round comes after the acts at 0, 3 and 6 (0.06 s, 0.15 of the budget), one more
    # after each act, to the act that reaches the budget (capped at 1).
    assert fractions[:18] == pytest.approx([(acts * 0.02) / 0.4 for acts in range(3, 21)])
    assert fractions[18:] in ([], [1.0])


def test_the_eta_is_the_time_budget_left_when_that_comes_first():
    now = [0.0]
    progress = parts.Progress("x", 1_000, 0, clock=lambda: now[0], seconds_left=lambda: 30.0)
    now[0] = 10.0
    progress.frames_per_second(100)  # 10 steps/s: 90 s to the step budget
    assert progress.eta_seconds(100) == 30.0
    progress = parts.Progress("x", 1_000, 0, clock=lambda: now[0], seconds_left=lambda: 500.0)
    now[0] = 30.0
    progress.frames_per_second(100)
    assert progress.eta_seconds(100) == pytest.approx(180.0)  # 900 steps at 5 steps/s
    progress = parts.Progress("x", 1_000, 0, clock=lambda: now[0], seconds_left=lambda: -3.0)
    assert progress.eta_seconds(0) == 0.0


def test_the_progress_line_shows_the_latest_score_episode_and_learner_metrics(tmp_path, capsys):
    _run(tmp_path, "run", _schedule(log_period=6))
    lines = [line for line in capsys.readouterr().out.splitlines() if "frames/s" in line]
    # At step 6 (frame 24): no test play yet, the episode that ended at step 6, no update yet.
    assert "frames 24/120" in lines[0]
    # test plays ahead at 12, 24 and the final one at 30, none timed yet; at step 18 the
    # one at 12 was, and the two still to come are counted in
    assert "+ 3 test plays |" in lines[0] and "incl. 2 test plays |" in lines[2]
    assert lines[0].endswith("eval - | last episode -21.0 | epsilon 0.25 | filling replay")
    # At step 18: the test play at 12 scored 1 (one update by then); the loss is the mean over
    # the updates since the last line; the agent's SPS scalar is not repeated on the line.
    assert lines[2].endswith("eval 1.0 | last episode -21.0 | epsilon 0.25 | td_loss 1")
    assert not any("SPS" in line for line in lines)


def test_a_one_game_run_whose_records_hold_games_shows_that_games_score(tmp_path, capsys):
    class OneGameAmn(CountingAgent):  # an AMN on one game: its test plays hold a "games" dict
        def evaluate(self, step, plays_so_far):
            record, scalars = super().evaluate(step, plays_so_far)
            return {"step": step, "frames": 4 * step, "games": {"Pong": {"mean": record["mean"]}}}, scalars

        def eval_text(self, record):
            return str(record["games"]["Pong"]["mean"])

    agent = OneGameAmn(str(tmp_path / "exports"))
    runner.Runner(str(tmp_path / "run"), agent, _schedule(log_period=6)).run()
    lines = [line for line in capsys.readouterr().out.splitlines() if "frames/s" in line]
    assert "eval 1.0 | last episode -21.0" in lines[2]


def test_a_stopped_run_resumes_exactly_where_it_stopped(tmp_path, capsys):
    _, straight = _run(tmp_path, "straight", _schedule())
    first, stopped = _run(tmp_path, "resumed", _schedule(), stop_at=15)
    # SIGTERM while acting at 15: that step's transition completes, the run checkpoints at
    # 18 and stops, exporting nothing.
    assert stopped == {"stopped": True, "run_dir": str(tmp_path / "resumed")}
    assert first.exports == [] and first.closed == 1
    assert "stopped at frame 72" in capsys.readouterr().out
    second, summary = _run(tmp_path, "resumed", _schedule())
    assert "resumed from" in capsys.readouterr().out
    # The same updates, the same acting draws, the same test plays and the same export as the
    # run that was never stopped.
    reference = CountingAgent("unused")
    runner.Runner(str(tmp_path / "straight"), reference, _schedule()).restore()
    assert int(second.weight.numpy()) == int(reference.weight.numpy()) == 6
    assert float(second.drawn.numpy()) == pytest.approx(float(reference.drawn.numpy()), abs=0)
    assert second.syncs == [21, 30]  # the one at 12 came before the stop
    strip = ("wall_seconds", "test_play_seconds")  # timings, not outcomes
    assert [{k: v for k, v in r.items() if k not in strip} for r in _history(tmp_path, "resumed")] == \
        [{k: v for k, v in r.items() if k not in strip} for r in _history(tmp_path, "straight")]
    assert second.exports == [(30, 6)]
    assert summary["export"] == straight["export"].replace("straight", "resumed")


def test_a_resume_without_the_replay_refills_before_learning_again(tmp_path):
    _run(tmp_path, "run", _schedule(save_replay=False), stop_at=15)
    agent, _ = _run(tmp_path, "run", _schedule(save_replay=False))
    # Stopped at 18 after the acts at 6..15 (4 acts, 12 steps: 3 updates). Resumed at 18 with
    # an empty memory, learning waits until step 18 + 6 = 24: the acts at 24 and 27 add 6
    # steps, 1.5 updates, so 1 more (credit restored: 0.0 at the checkpoint) = 4 in all.
    assert int(agent.updates.numpy()) == 4
    assert agent.exports == [(30, 4)]


def test_a_finished_run_exports_once_and_a_larger_budget_exports_a_new_version(tmp_path, capsys):
    _run(tmp_path, "run", _schedule())
    again, summary = _run(tmp_path, "run", _schedule())
    assert again.exports == [] and again.closed == 1
    assert "run already finished" in capsys.readouterr().out
    assert summary["export"].endswith(os.path.join("run", "1"))
    extended, summary = _run(tmp_path, "run", _schedule(total_steps=36))
    assert "extending the finished run from 120 to 144 frames" in capsys.readouterr().out
    # Acts at 30 and 33 add 6 steps: 1.5 more updates on top of the 6 (credit 0 at 30) -> 7.
    assert extended.exports == [(36, 7)]
    assert summary["export"].endswith(os.path.join("run", "2"))
    assert sorted(os.listdir(tmp_path / "exports" / "run")) == ["1", "2"]


def test_a_finished_run_rerun_does_not_read_its_saved_replay_unless_it_trains_again(tmp_path, capsys, monkeypatch):
    """Rerunning a finished run only to hear it is finished must not read its replay (the
    authors' 1M-transition replay is about 7 GB on disk and in memory); a larger budget, which
    trains on, restores it as a resume does."""
    _run(tmp_path, "run", _schedule())
    reads = []
    restore = replay.ReplayMemory.restore
    monkeypatch.setattr(replay.ReplayMemory, "restore",
                        lambda memory, path: (reads.append(os.path.basename(path)), restore(memory, path))[1])
    again, _ = _run(tmp_path, "run", _schedule())
    out = capsys.readouterr().out
    assert "run already finished" in out and "refills" not in out
    assert reads == [] and again.exports == []
    _run(tmp_path, "run", _schedule(total_steps=36))
    assert reads == ["replay-0.npz"]
    assert "extending the finished run" in capsys.readouterr().out


def test_an_agent_missing_part_of_the_interface_is_refused_by_name(tmp_path):
    class Partial:
        label, games, memories, trackables = "partial", ["Pong"], [], {}

        def act(self, step):
            return 1

    with pytest.raises(TypeError, match=r"Partial is not a runner.Agent: it lacks learner, rng, "
                                        r"export_base, budget_flag, prepare\(\)"):
        runner.Runner(str(tmp_path / "run"), Partial(), _schedule())
    assert not (tmp_path / "run").exists()


def test_the_progress_rate_restarts_once_when_learning_starts(tmp_path, monkeypatch):
    marked = []
    monkeypatch.setattr(parts.Progress, "phase_started", lambda self, step: marked.append(step))
    _run(tmp_path, "run", _schedule())  # acts of 3 steps, learning from step 6
    assert marked == [6]
    # A run that learns from its first step (or resumes past its learning start) never marks it.
    marked.clear()
    _run(tmp_path, "more", _schedule(learning_starts=0))
    assert marked == []


def test_a_run_short_of_disk_for_its_replay_checkpoints_warns_at_its_start_and_runs(tmp_path, monkeypatch, capsys):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(runner.shutil, "disk_usage", lambda path: usage._replace(free=0))
    agent, summary = _run(tmp_path, "short", _schedule())
    out = capsys.readouterr().out
    assert out.count("[counting] warning: 0.0 GB free under the run") == 1
    assert agent.exports == [(30, 6)]  # a warning, not a refusal: the run trains to its end
    _run(tmp_path, "small", _schedule(save_replay=False))  # no replay in its checkpoints: no warning
    assert "warning" not in capsys.readouterr().out
