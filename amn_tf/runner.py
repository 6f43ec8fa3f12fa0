"""One run loop for every training mode (DQN, transfer, AMN, multitask DQN).

``launch`` is how every mode starts a run: it claims the run directory, records the flags,
sets seeds and precision, builds the agent and hands it to a ``Runner``. The ``Runner`` restores the last complete checkpoint into the
agent (a typed ``RunState``), keeps the evaluation history and TensorBoard events in step
with it, turns SIGINT/SIGTERM into a checkpoint and a clean stop, and runs the loop

    added = agent.act(step)       # choose and send actions (emulators step in C++ threads)
    agent.progress(fraction)      # how far the run is (schedules over the run), then
    learn(added)                  # update credit: one learner update per update_period steps
    episodes = agent.observe()    # results into the replay memories
    advance(added)                # target sync, progress line, test play, checkpoint

then the final test play and the export, exactly once per run (the export path is fixed in a
checkpoint before writing, so a restart after a crash finishes that version). An agent
supplies only what is its own: its networks and memories (``trackables``, ``memories``), its
learner (``learner.step()``, ``learner.updates``, ``learner.update_target()`` when it has a
target network), acting, test play, progress text and export; see ``Agent``.

Steps are agent steps (per game for the multi-game agents); frames = steps x 4.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

import numpy as np

from amn_tf import checkpoints, envs, export, jsonl, parts, rundirs, runtime, snapshots

STATE_VERSION = 2  # 1: written before the one run loop (no "version" key; DQN: "replay_rng")


@dataclasses.dataclass
class RunState:
    """What a checkpoint's ``state.json`` holds besides the trackables' weights."""

    step: int = 0  # agent steps (per game) done
    actor_rng: dict | None = None  # the acting generator's bit_generator.state
    replay_rngs: list = dataclasses.field(default_factory=list)  # one per memory
    replay_saved: bool = False  # the memories are in the checkpoint (replay-<i>.npz)
    update_credit: float = 0.0  # learner updates owed to the steps already played
    finished: bool = False  # exported; a larger budget reopens it
    summary: dict = dataclasses.field(default_factory=dict)  # the result, or a pending export
    games: list = dataclasses.field(default_factory=list)
    # Seconds of the run loop (playing, learning, test plays, checkpoints) that made this
    # state, summed over invocations; None for a run checkpointed before it was kept.
    wall_seconds: float | None = 0.0
    # Seconds of those spent in test plays (0 for a run checkpointed before they were kept).
    test_play_seconds: float = 0.0
    # Known only after a restore, never saved:
    path: str | None = None
    replay_restored: bool = False

    def to_json(self) -> dict:
        payload = dataclasses.asdict(self)
        del payload["path"], payload["replay_restored"]
        return {"version": STATE_VERSION, **payload}

    @classmethod
    def from_json(cls, payload: dict) -> RunState:
        """Reads version 2, and version 1 (the single-game ``replay_rng`` of old DQN runs)."""
        check_version(payload)
        rngs = payload.get("replay_rngs")
        if rngs is None:
            rngs = [payload["replay_rng"]] if "replay_rng" in payload else []
        return cls(step=int(payload["step"]), actor_rng=payload.get("actor_rng"), replay_rngs=rngs,
                   replay_saved=bool(payload.get("replay_saved")),
                   update_credit=float(payload.get("update_credit", 0.0)),
                   finished=bool(payload.get("finished")), summary=payload.get("summary") or {},
                   games=list(payload.get("games") or []), path=payload.get("path"),
                   wall_seconds=payload.get("wall_seconds"),
                   test_play_seconds=float(payload.get("test_play_seconds") or 0.0),
                   replay_restored=bool(payload.get("replay_restored")))


def check_version(payload: dict) -> None:
    """Refuses, in one line, a checkpoint written by a newer amn_tf (its state may mean
    something this version cannot read)."""
    version = payload.get("version", 1)
    if not isinstance(version, int) or version > STATE_VERSION:
        raise checkpoints.CheckpointError(
            f"checkpoint state version {version!r} is newer than this amn_tf reads "
            f"({STATE_VERSION}): resume it with the amn_tf that wrote it (pip install -e . at "
            "that commit), or start over in a new --run_dir")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When things happen, in agent steps (per game for multi-game agents)."""

    total_steps: int
    learning_starts: int
    update_period: int
    log_period: int
    eval_period: int
    checkpoint_period: int
    target_update_period: int | None = None  # None: no target network
    save_replay: bool = False
    deterministic: bool = False  # new episodes seeded by the step at each checkpoint
    profile_steps: tuple | None = None
    per_game: bool = False  # messages say "per game"
    keep_best: bool = False  # single-game runs: a SavedModel of the best test play so far
    train_seconds: float | None = None  # the run ends when its training time reaches this


def schedule_of(config, total_steps: int, target_update_period: int | None = None,
                per_game: bool = False, keep_best: bool = False) -> Schedule:
    """The schedule of a mode's config (``learning_starts``, ``update_period``, the periods,
    ``save_replay``, ``deterministic``, ``profile_steps``: named alike in every mode's config).
    A deterministic run keeps its replay in every checkpoint."""
    return Schedule(total_steps, config.learning_starts, config.update_period, config.log_period,
                    config.eval_period, config.checkpoint_period, target_update_period,
                    config.save_replay or config.deterministic, config.deterministic,
                    config.profile_steps, per_game, keep_best,
                    config.train_minutes * 60 if config.train_minutes else None)


class Agent:
    """What a mode gives the runner: subclass it (``dqn_agent.DqnAgent`` is the simplest one).

    An agent must set the attributes below and define ``act``, ``observe``, ``evaluate`` and
    ``export``; every other method has a default that does nothing. ``Runner`` checks an agent
    against this list before it starts (``check_agent``)."""

    label: str  # "[label]" starts every line
    games: list
    memories: list  # replay.ReplayMemory per game, in game order
    trackables: dict  # name -> TF object saved in every checkpoint
    learner: object  # .step() -> metrics, .updates and .skipped (tf.Variables), .update_target()
    rng: np.random.Generator  # acting
    export_base: str  # <export_dir>/<kind>/<name>: versions go under it
    budget_flag: str = "--training_steps"  # the flag that extends a finished run

    def prepare(self, run_dir: str) -> None:
        """After the restore, before anything else."""

    def start(self, step: int, restored: bool) -> None:
        """The first episodes (or actors)."""

    def new_episodes(self, step: int) -> None:
        """Deterministic runs, at each checkpoint."""

    def progress(self, fraction: float) -> None:
        """Before each round of learner updates: how far the run is toward its end, 0 to 1
        (``Runner.progress_fraction``), for schedules over the whole run."""

    def act(self, step: int) -> int:
        """Sends the next actions; returns the agent steps (per game) the next observe adds."""
        raise NotImplementedError

    def observe(self) -> list:
        """[(game, return)] of the episodes that ended."""
        raise NotImplementedError

    def evaluate(self, step: int, plays_so_far: int) -> tuple:
        """One test play: (record, TensorBoard scalars)."""
        raise NotImplementedError

    def export(self, path: str, record: dict, step: int, run_dir: str) -> None:
        raise NotImplementedError

    def train_scalars(self, metrics: dict, fps: float) -> dict:
        """TensorBoard tag -> value at a progress line (the learner metrics are means since the
        previous line; empty before the first update). The runner prints the ``losses/``,
        ``train/`` and ``charts/epsilon`` ones on the line too."""
        return {}

    def eval_text(self, record: dict) -> str:
        """A test play's record as text (at each test play, the end, and an already finished run)."""
        return f"mean {record['mean']:.1f}" if "mean" in record else ""

    def summary(self, record: dict, path: str, step: int) -> dict:
        return {}

    def close(self) -> None:
        """Emulators, actors: released at the end of the run, however it ends."""


STATUS_TAGS = ("losses/", "train/", "charts/epsilon")  # the scalars a progress line shows
AGENT_ATTRIBUTES = ("label", "games", "memories", "trackables", "learner", "rng", "export_base",
                    "budget_flag")
AGENT_METHODS = tuple(name for name, value in vars(Agent).items()
                      if callable(value) and not name.startswith("_"))


def check_agent(agent) -> None:
    """Raises TypeError naming what ``agent`` lacks of ``Agent`` (an attribute or a method)."""
    missing = [name for name in AGENT_ATTRIBUTES if not hasattr(agent, name)]
    missing += [f"{name}()" for name in AGENT_METHODS if not callable(getattr(agent, name, None))]
    if missing:
        raise TypeError(f"{type(agent).__name__} is not a runner.Agent: it lacks {', '.join(missing)}")


def launch(run_dir: str, identity: dict, config, schedule: Schedule, make_agent, *, prepare=None,
           fixed=None, replay_flags=()) -> dict:
    """Runs one training of any mode from its config to the end (or a stop signal); returns its
    summary. The one way a mode starts a run:

    1. claims ``run_dir`` if it holds a run already (refused at once, in one line, while
       another process trains there);
    2. sets the precision and the seeds (``config.precision``, ``config.seed``,
       ``config.deterministic``);
    3. ``prepare()``: what must succeed before anything is written (a transfer's initial
       network); a failure here leaves no run directory behind;
    4. creates and claims the run directory, or checks a resume belongs to it, and records the
       flags (``rundirs.prepare_run_dir`` with ``identity``, ``fixed``, ``replay_flags``);
    5. ``make_agent(prepared)`` with what ``prepare`` returned, and ``Runner(...).run()``.

    The claim ends when this returns or raises, so a second run in the same process (or the
    next task of a reused Ray worker) claims its directory anew."""
    with rundirs.run_dir_claims():
        if rundirs.is_run_dir(run_dir):
            rundirs.lock_run_dir(run_dir)
        runtime.set_precision(config.precision)
        runtime.set_seeds(config.seed, config.deterministic)
        prepared = prepare() if prepare else None
        rundirs.prepare_run_dir(run_dir, identity, config.flags, fixed=fixed, replay_flags=replay_flags)
        return Runner(run_dir, make_agent(prepared), schedule).run()


class Runner:
    """Runs ``agent`` on ``schedule`` in ``run_dir`` to the end, or to a stop signal; returns
    the run's summary dict. ``launch`` claims the directory and builds the agent; a test may
    run a ``Runner`` on a directory of its own directly."""

    def __init__(self, run_dir: str, agent, schedule: Schedule):
        check_agent(agent)
        self.run_dir = run_dir
        self.agent = agent
        self.schedule = schedule
        self.state = RunState(games=list(agent.games), replay_saved=schedule.save_replay)
        self.history: list = []
        self.metrics: dict = {}  # means over the updates up to the latest log line
        self.metric_means = parts.MetricMeans()
        self.last_returns: dict = {}  # game -> unclipped return of its latest finished episode
        self.manager = checkpoints.CheckpointManager(os.path.join(run_dir, "checkpoints"))
        self.writer = None
        self.per_game = " per game" if schedule.per_game else ""
        self.clock = None  # (time.monotonic() at the loop's start, wall_seconds then)
        self.snapshots = snapshots.BestSnapshots(run_dir, agent, self.manager.directory)

    # ------------------------------------------------------------ checkpoints
    def restore(self) -> None:
        memories = self.agent.memories if self.schedule.save_replay else ()
        payload = self.manager.restore(self.agent.trackables, memories, validate=check_version,
                                       replay_wanted=lambda state: not self._stays_finished(RunState.from_json(state)))
        if payload is None:
            return
        self.state = RunState.from_json(payload)
        self.agent.rng.bit_generator.state = self.state.actor_rng
        for memory, rng_state in zip(self.agent.memories, self.state.replay_rngs):
            memory.rng.bit_generator.state = rng_state
        refill = ("" if self.state.replay_restored or self._stays_finished(self.state)
                  else " (replay refills before learning resumes)")
        print(f"[{self.agent.label}] resumed from {self.state.path} at frame "
              f"{self.frames(self.state.step):,}{self.per_game}{refill}", flush=True)

    def save(self, finished: bool = False, summary: dict | None = None) -> None:
        if self.writer is not None:
            self.writer.flush()  # every event up to this step is on disk before the checkpoint
        self.state.actor_rng = self.agent.rng.bit_generator.state
        self.state.replay_rngs = [m.rng.bit_generator.state for m in self.agent.memories]
        self.state.replay_saved = self.schedule.save_replay
        self.state.finished, self.state.summary = finished, summary or {}
        self.state.wall_seconds = self.wall_seconds()
        self.manager.save(self.state.step, self.agent.trackables, self.state.to_json(),
                          self.agent.memories if self.schedule.save_replay else ())
        self.snapshots.prune()  # what no kept checkpoint's timeline needs

    def warn_if_disk_short(self) -> None:
        """At the start of training, one line if the disk under the run cannot hold the
        checkpoints still to come with their replay (``--save_replay``: a 1M-transition replay is
        about 7 GB), so that a 'disk full' stop hours later is no surprise."""
        if not self.schedule.save_replay:
            return
        each = sum(memory.nbytes() for memory in self.agent.memories)
        free = shutil.disk_usage(self.manager.directory).free
        warning = checkpoints.space_warning(free, each, len(self.manager.complete()), self.manager.keep)
        if warning:
            print(f"[{self.agent.label}] warning: {warning}", flush=True)

    def wall_seconds(self) -> float | None:
        """Seconds of the run loop that made the state so far (see ``RunState``)."""
        if self.clock is None or self.clock[1] is None:
            return self.state.wall_seconds
        started, before = self.clock
        return before + time.monotonic() - started

    def training_seconds_left(self) -> float | None:
        """Seconds of ``--train_minutes`` left: the budget less the run loop's wall clock without
        its test plays; None without a budget (or for a run that did not keep its wall clock)."""
        return self._seconds_left(self.wall_seconds(), self.state.test_play_seconds)

    def _seconds_left(self, wall: float | None, test_play_seconds: float) -> float | None:
        if self.schedule.train_seconds is None or wall is None:
            return None
        return self.schedule.train_seconds - (wall - test_play_seconds)

    def _test_plays_ahead(self, step: int, end: int) -> tuple:
        """Test plays between ``step`` and the end at ``end`` (the periodic ones, then the
        final one), and the mean seconds of the run's test plays so far (None before one)."""
        period = self.schedule.eval_period
        periodic = max(0, (end - 1) // period - step // period)
        each = self.state.test_play_seconds / len(self.history) if self.history else None
        return periodic + 1, each or None

    def progress_fraction(self) -> float:
        """How far the run is toward its end, 0 to 1: its steps of the budget, or its training
        time of ``--train_minutes`` when that is further along (whichever ends the run first)."""
        fraction = self.state.step / self.schedule.total_steps
        left = self.training_seconds_left()
        if left is not None:
            fraction = max(fraction, 1.0 - left / self.schedule.train_seconds)
        return min(1.0, max(0.0, fraction))

    def _out_of_time(self) -> bool:
        left = self.training_seconds_left()
        return left is not None and left <= 0

    @staticmethod
    def frames(step: int) -> int:
        return step * envs.FRAMES_PER_STEP

    # ------------------------------------------------------------ the run
    def run(self) -> dict:
        self.restore()
        self.agent.prepare(self.run_dir)
        if self._finished():
            return self._already_finished()
        self._open_logs()
        profiler = parts.StepProfiler(self.schedule.profile_steps, self._tensorboard(),
                                        int(self.agent.learner.updates.numpy()))
        self.warn_if_disk_short()
        self.clock = (time.monotonic(), self.state.wall_seconds)
        try:
            self.agent.start(self.state.step, self.state.replay_restored and self.schedule.deterministic)
            stopped = self._loop(profiler)
        finally:
            profiler.finish()
            self.agent.close()
        if stopped:
            self.save()
            print(f"[{self.agent.label}] stopped at frame {self.frames(self.state.step):,}"
                  f"{self.per_game}; run the same command to resume", flush=True)
            return {"stopped": True, "run_dir": self.run_dir}
        return self._finish()

    def _stays_finished(self, state: RunState) -> bool:
        """``state`` is a finished run's that this schedule does not train further: its step
        budget is not past the state's step, or its ``--train_minutes`` are spent."""
        if not state.finished:
            return False
        if self.schedule.total_steps <= state.step:
            return True
        left = self._seconds_left(state.wall_seconds, state.test_play_seconds)
        return bool(state.summary.get("time_budget_minutes")) and left is not None and left <= 0

    def _finished(self) -> bool:
        """A finished run stays finished unless the budget goes past its step; then it is
        reopened (a fresh export version follows)."""
        if not self.state.finished:
            return False
        if self._stays_finished(self.state):
            return True
        print(f"[{self.agent.label}] extending the finished run from {self.frames(self.state.step):,} "
              f"to {self.frames(self.schedule.total_steps):,} frames{self.per_game} (exports a new "
              "version)", flush=True)
        self.state.finished, self.state.summary = False, {}
        return False

    def _already_finished(self) -> dict:
        summary = self.state.summary
        more = f"a larger {self.agent.budget_flag}" + (" or --train_minutes" if summary.get("time_budget_minutes") else "")
        print(f"[{self.agent.label}] run already finished: {summary.get('export')} ({more} trains it "
              "further)", flush=True)
        final = jsonl.read(os.path.join(self.run_dir, "eval.jsonl"))
        if final:
            print(f"[{self.agent.label}] its last recorded test play, at frame "
                  f"{self.frames(final[-1]['step']):,}{self.per_game}: {self.agent.eval_text(final[-1])}",
                  flush=True)
        if summary.get("best"):
            print(snapshots.best_text(self.agent.label, summary["best"]), flush=True)
        self.agent.close()
        return {"run_dir": self.run_dir, **summary}

    def _tensorboard(self) -> str:
        return os.path.join(self.run_dir, "tensorboard")

    def _open_logs(self) -> None:
        """Keeps exactly the evaluations and TensorBoard events made up to the restored step."""
        import tensorflow as tf

        self.eval_path = os.path.join(self.run_dir, "eval.jsonl")
        self.history = [r for r in jsonl.read(self.eval_path) if r["step"] <= self.state.step]
        jsonl.rewrite(self.eval_path, self.history)
        parts.trim_tensorboard(self._tensorboard(), self.frames(self.state.step))
        self.snapshots.restore(self.history, self.state.step)
        self.writer = tf.summary.create_file_writer(self._tensorboard())

    def _loop(self, profiler) -> bool:
        """Plays and learns to the budget; returns whether a stop signal ended it."""
        s = self.schedule
        learning_starts = s.learning_starts
        if self.state.path and not self.state.replay_restored:  # the replay refills first
            learning_starts = self.state.step + s.learning_starts
        self.progress = parts.Progress(self.agent.label, s.total_steps, self.state.step,
                                       seconds_left=self.training_seconds_left,
                                       test_plays=self._test_plays_ahead)
        with parts.StopSignal() as stop:
            learning = self.state.step >= learning_starts
            while self.state.step < s.total_steps and not stop.requested and not self._out_of_time():
                added = self.agent.act(self.state.step)
                if not learning and self.state.step >= learning_starts:
                    self.progress.phase_started(self.state.step)  # the ETA's rate: learning only
                    learning = True
                if learning:
                    self.agent.progress(self.progress_fraction())
                    self._learn(added, profiler)
                self._advance(added, self.agent.observe())
        return stop.requested

    def _learn(self, added: int, profiler) -> None:
        self.state.update_credit += added / self.schedule.update_period
        while self.state.update_credit >= 1.0:
            self.metric_means.add(profiler.step(self.agent.learner.step))
            self.state.update_credit -= 1.0

    def _scalars(self, step: int, scalars: dict) -> None:
        import tensorflow as tf

        with self.writer.as_default(step=self.frames(step)):
            for tag, value in scalars.items():
                tf.summary.scalar(tag, value)

    def _advance(self, added: int, episodes: list) -> None:
        s = self.schedule
        before = self.state.step
        step = self.state.step = before + added
        for game, episode_return in episodes:
            self.last_returns[game] = episode_return
            tag = "charts/episodic_return" if len(self.agent.games) == 1 else f"charts/{game}/episodic_return"
            self._scalars(step, {tag: episode_return})
        if s.target_update_period and parts.crossed(before, step, s.target_update_period):
            self.agent.learner.update_target()
        if parts.crossed(before, step, s.log_period):
            fps = self.progress.frames_per_second(step)
            self.metrics = self.metric_means.take() or self.metrics
            scalars = self.agent.train_scalars(self.metrics, fps)
            print(self.progress.line(step, fps, self._status(scalars)), flush=True)
            self._scalars(step, scalars)
        if parts.crossed(before, step, s.eval_period) and step < s.total_steps:
            record = self._evaluate()
            print(f"[{self.agent.label}] eval at frame {self.frames(step):,}{self.per_game}: "
                  f"{self.agent.eval_text(record)}", flush=True)
            self._keep_if_best(record)
        if parts.crossed(before, step, s.checkpoint_period):
            if s.deterministic:  # new episodes from a seed an uninterrupted run shares
                self.agent.new_episodes(step)
            self.save()

    def _status(self, scalars: dict) -> str:
        """The progress line's own part: the latest test play (one game), the latest episodes,
        and the learner's metrics and epsilon from the agent's scalars."""
        parts = []
        if len(self.agent.games) == 1:
            game = self.agent.games[0]
            latest = self.history[-1] if self.history else {}  # a DQN's record, or a one-game AMN's
            score = latest.get("mean", latest.get("games", {}).get(game, {}).get("mean"))
            parts.append(f"eval {'-' if score is None else f'{score:.1f}'}")
            parts.append(f"last episode {self.last_returns.get(game, '-')}")
        else:
            parts.append("last episodes: " + " ".join(f"{g} {self.last_returns.get(g, '-')}"
                                                      for g in self.agent.games))
        shown = [(tag.split("/")[-1], value) for tag, value in scalars.items()
                 if tag.startswith(STATUS_TAGS)]
        learned = any(tag.startswith("losses/") for tag in scalars)
        parts += [f"{name} {value:.4g}" for name, value in shown]
        if not learned:
            parts.append("filling replay")
        return " | ".join(parts)

    def _evaluate(self) -> dict:
        started = time.monotonic()
        record, scalars = self.agent.evaluate(self.state.step, len(self.history))
        # What this test play took, so training time is wall_seconds less the test plays'.
        took = time.monotonic() - started
        self.state.test_play_seconds += took
        record["test_play_seconds"] = round(took, 1)
        # Learner updates so far (fewer than the steps imply when a resume refilled the replay)
        # and those skipped as non-finite (--skip_nonfinite), which are not among them.
        record["updates"] = int(self.agent.learner.updates.numpy())
        record["skipped_updates"] = int(self.agent.learner.skipped.numpy())
        wall = self.wall_seconds()  # to the end of this test play, on the host(s) that trained
        if wall is not None:
            record["wall_seconds"] = round(wall, 1)
        self.history.append(record)
        jsonl.append(self.eval_path, record)
        self._scalars(self.state.step, scalars)
        return record

    def _keep_if_best(self, record: dict) -> None:
        if self.schedule.keep_best:
            self.snapshots.offer(record, self.state.step)

    def _finish(self) -> dict:
        step = self.state.step
        timed = step < self.schedule.total_steps  # the loop ended on --train_minutes
        if timed:
            print(f"[{self.agent.label}] --train_minutes={self.schedule.train_seconds / 60:g} reached "
                  f"at frame {self.frames(step):,}{self.per_game}", flush=True)
        if self.history and self.history[-1]["step"] == step:  # a restart after the final one
            record = self.history[-1]
        else:
            record = self._evaluate()
            self._keep_if_best(record)
        path = export.run_export_path(self.state.summary, self.agent.export_base)
        self.save(summary={"pending_export": path})
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            self.agent.export(path, record, step, self.run_dir)
        summary = {**self.agent.summary(record, path, step), "export": path, "run_dir": self.run_dir,
                   **({"best": self.snapshots.best} if self.snapshots.best else {}),
                   **({"time_budget_minutes": self.schedule.train_seconds / 60} if timed else {})}
        self.save(finished=True, summary=summary)
        print(f"[{self.agent.label}] final test play at frame {self.frames(step):,}{self.per_game}: "
              f"{self.agent.eval_text(record)}", flush=True)
        if self.snapshots.best is not None:
            print(snapshots.best_text(self.agent.label, self.snapshots.best), flush=True)
        print(f"[{self.agent.label}] SavedModel: {path}\n[{self.agent.label}] TensorBoard: "
              f"tensorboard --logdir {self._tensorboard()}", flush=True)
        return summary
