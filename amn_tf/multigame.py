"""Every game's batched environment and replay memory, stepped together: the acting side
shared by the AMN and the multitask DQN loops.

One step sends each game's actions (the emulators then run in their C++ threads while the
caller updates the learner), then receives every game's results into its memory. With
``annotate`` (the AMN's ``ExpertOutputs``), the outputs of every new state of every game are
computed in one call per step and stored with the states.
"""

from __future__ import annotations

import os

import numpy as np

from amn_tf import envs


class GamePlay:
    def __init__(self, games, memories, num_envs, protocol, seed, backend, annotate=None):
        """``annotate``: optional callable, [states of each game] -> [outputs of each game]
        (dicts of per-state arrays) for memories that store outputs."""
        self.games = list(games)
        self.memories = memories
        self.annotate = annotate
        self.num_envs = num_envs
        self.seed = seed
        self.envs = [envs.make_env(g, num_envs, protocol, seed + 1000 * i, backend)
                     for i, g in enumerate(self.games)]
        self.streams = np.arange(num_envs)
        self.observations = []
        self.last_returns = {}  # game -> unclipped return of its latest finished episode
        self._actions = []

    def new_episodes(self, step: int, restored: bool = False) -> None:
        """Every env starts an episode seeded by ``step`` (deterministic runs do this at each
        checkpoint, so a resumed run sees what an uninterrupted one saw). ``restored``: the
        memories already hold these first observations (a restored deterministic checkpoint)."""
        self.observations = [env.reset(seed=self.seed + 1000 * index + step)
                             for index, env in enumerate(self.envs)]
        if not restored:
            outputs = self.annotate(self.observations) if self.annotate else [None] * len(self.envs)
            for memory, obs, output in zip(self.memories, self.observations, outputs):
                memory.start_episodes(self.streams, obs, output)

    def send(self, actions_per_game) -> None:
        self._actions = [np.asarray(a, np.int32) for a in actions_per_game]
        for env, actions in zip(self.envs, self._actions):
            env.send(actions)

    def recv(self) -> None:
        """Results of the last ``send`` into each game's memory; new episodes recorded."""
        results = [env.recv() for env in self.envs]
        ended = [result.terminated | result.truncated for result in results]
        outputs = [(None, None)] * len(results)
        if self.annotate:  # one call for every game: the next states, then new episodes' first
            annotated = self.annotate([np.concatenate([r.final_obs, r.obs[e]])
                                       for r, e in zip(results, ended)])
            outputs = [({k: v[: self.num_envs] for k, v in a.items()},
                        {k: v[self.num_envs :] for k, v in a.items()}) for a in annotated]
        for index, (result, memory) in enumerate(zip(results, self.memories)):
            memory.append(self.streams, self._actions[index], result.reward, result.terminated,
                          result.truncated, result.life_lost, result.final_obs, outputs[index][0])
            if ended[index].any():
                memory.start_episodes(self.streams[ended[index]], result.obs[ended[index]],
                                      outputs[index][1])
            self.observations[index] = result.obs
            for _, episode_return, _ in result.episode_returns:
                self.last_returns[self.games[index]] = episode_return

    def scores(self) -> str:
        return " ".join(f"{g} {self.last_returns.get(g, '-')}" for g in self.games)

    def close(self) -> None:
        for env in self.envs:
            env.close()


class RunState:
    """The run-directory side shared by the multi-game loops (AMN, multitask DQN).

    Restores the last complete checkpoint (trackables, step, acting and sampling generators,
    update credit, and the replay when it was saved), keeps the evaluation history and the
    TensorBoard events in step with it, and saves it all again. ``export_once`` is the
    end-of-run protocol: the export path is fixed in a checkpoint before exporting, so a
    restart after a crash finishes that export instead of writing a second version.
    """

    def __init__(self, run_dir, trackables, memories, save_replay, seed, label, games):
        from amn_tf import checkpoints

        self.run_dir = run_dir
        self.trackables = trackables
        self.memories = memories
        self.save_replay = save_replay
        self.label = label
        self.games = list(games)
        self.manager = checkpoints.CheckpointManager(os.path.join(run_dir, "checkpoints"))
        self.state = self.manager.restore(trackables, memories if save_replay else ())
        self.rng = np.random.default_rng(seed)
        self.step = 0
        self.update_credit = 0.0
        self.history = []
        self.writer = None
        if self.state:
            self.step = int(self.state["step"])
            self.rng.bit_generator.state = self.state["actor_rng"]
            for memory, memory_state in zip(memories, self.state["replay_rngs"]):
                memory.rng.bit_generator.state = memory_state
            self.update_credit = float(self.state.get("update_credit", 0.0))
            print(f"[{label}] resumed from {self.state['path']} at frame "
                  f"{self.step * envs.FRAMES_PER_STEP:,} per game", flush=True)

    def finished(self, total_steps: int) -> bool:
        """True for a finished run that ``total_steps`` does not extend (see
        ``runtime.finished_or_extended``)."""
        from amn_tf import runtime

        finished, self.state = runtime.finished_or_extended(self.state, self.step, total_steps,
                                                            self.label, " per game")
        return finished

    @property
    def replay_restored(self) -> bool:
        return bool(self.state and self.state["replay_restored"])

    def learning_starts(self, configured: int) -> int:
        """A resumed run whose replay was not saved refills it before learning again."""
        return self.step + configured if (self.state and not self.replay_restored) else configured

    def open_logs(self):
        """Eval history and TensorBoard events cut back to the restored step; returns the writer."""
        import tensorflow as tf

        from amn_tf import runtime

        self.eval_path = os.path.join(self.run_dir, "eval.jsonl")
        self.history = [r for r in runtime.read_jsonl(self.eval_path) if r["step"] <= self.step]
        runtime.rewrite_jsonl(self.eval_path, self.history)
        tensorboard = os.path.join(self.run_dir, "tensorboard")
        runtime.trim_tensorboard(tensorboard, self.step * envs.FRAMES_PER_STEP)
        self.writer = tf.summary.create_file_writer(tensorboard)
        return self.writer

    def record_eval(self, record: dict) -> dict:
        from amn_tf import runtime

        self.history.append(record)
        runtime.append_jsonl(self.eval_path, record)
        return record

    def save(self, finished=False, summary=None) -> None:
        if self.writer is not None:
            self.writer.flush()
        payload = {"step": self.step, "actor_rng": self.rng.bit_generator.state,
                   "replay_rngs": [m.rng.bit_generator.state for m in self.memories],
                   "replay_saved": self.save_replay, "update_credit": self.update_credit,
                   "finished": finished, "summary": summary or {}, "games": self.games}
        self.manager.save(self.step, self.trackables, payload,
                          self.memories if self.save_replay else ())

    def save_if_due(self, before: int, period: int, new_episodes=None) -> None:
        """Checkpoints when the step passed a multiple of ``period``; ``new_episodes(step)``
        first restarts the episodes (deterministic runs)."""
        from amn_tf import runtime

        if runtime.crossed(before, self.step, period):
            if new_episodes is not None:
                new_episodes(self.step)
            self.save()

    def final_record(self, run_evaluation) -> dict:
        """The evaluation at the last step: reused when a restart comes after it."""
        if self.history and self.history[-1]["step"] == self.step:
            return self.history[-1]
        return run_evaluation()

    def export_once(self, base: str, write) -> str:
        """Exports through ``write(path)`` under ``base`` exactly once; returns the path."""
        from amn_tf import export

        path = export.run_export_path(self.state, base)
        self.save(summary={"pending_export": path})
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            write(path)
        return path

    def stop_message(self) -> str:
        return (f"[{self.label}] stopped at frame {self.step * envs.FRAMES_PER_STEP:,} per game; "
                "run the same command to resume")
