"""Multitask DQN baselines of the paper's Appendix C, trained by Q-learning on all games.

MDQN shares a whole Nature DQN and gives each game its own output layer; MCDQN shares the
convolutions and gives each game its own FC 512 and output layer (``networks.multitask_dqn``).
Each update takes ``batch_per_game`` transitions from every game's own replay memory; every
sample's Q-values, TD target and max come from its own game's head, over that game's legal
actions:

  target_i = r_t + discount_t * Q_target_i(s_t, argmax_a Q_i(s_t, a))   (double DQN)
  loss     = mean over all samples of Huber(target_i - Q_i(s_tm1, a_tm1))

so a head only ever receives gradient from its own game's samples.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from amn_tf import (
    actor_mimic,
    dqn,
    envs,
    evaluation,
    export,
    learning,
    losses,
    multigame,
    networks,
    optimizers,
    replay,
    runtime,
)
from amn_tf import (
    config as config_lib,
)


class MultitaskDqnLearner:
    def __init__(self, torso, heads, target_torso, target_heads, optimizer, dataset, legal_by_game,
                 batch_per_game, double_dqn=True, skip_nonfinite=False):
        self.torso, self.heads = torso, heads
        self.target_torso, self.target_heads = target_torso, target_heads
        self.optimizer = optimizer
        tables = [dqn.action_tables(legal, len(legal))[2] for legal in legal_by_game]
        self._action_to_output = [tf.constant(t, tf.int32) for t in tables]
        self._b = batch_per_game
        self._double = double_dqn
        self.skip_nonfinite = skip_nonfinite
        self.variables = list(torso.trainable_variables)
        for head in heads:
            self.variables += list(head.trainable_variables)
        self.updates = learning.counter("updates")
        self.skipped = learning.counter("skipped_updates")
        optimizer.build(self.variables)
        self._step = learning.Stepper(self.compute, self.variables, optimizer, self.updates,
                                      self.skipped, dataset)

    def _slice(self, tensor, index):
        return tensor[index * self._b : (index + 1) * self._b]

    def td_errors(self, batch):
        """Per-sample TD errors, each through its own game's head (online and target)."""
        r_t = batch["r_t"]  # clipped (and n-step) in the dataset
        shared_t_target = self.target_torso(batch["s_t"], training=False)
        shared_t_online = self.torso(batch["s_t"], training=False) if self._double else None
        shared_tm1 = self.torso(batch["s_tm1"], training=True)
        errors = []
        for index, head in enumerate(self.heads):
            q_tm1, _ = head(self._slice(shared_tm1, index), training=True)
            q_t_target, _ = self.target_heads[index](self._slice(shared_t_target, index))
            q_t_online = head(self._slice(shared_t_online, index))[0] if self._double else None
            a_tm1 = tf.gather(self._action_to_output[index], self._slice(batch["a_tm1"], index))
            errors.append(losses.td_error(q_tm1, a_tm1, self._slice(r_t, index),
                                          self._slice(batch["discount_t"], index), q_t_target,
                                          q_t_online))
        return tf.concat(errors, 0)

    def compute(self, batch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(losses.huber(self.td_errors(batch)))
        return loss, tape.gradient(loss, self.variables), {"td_loss": loss}

    def step(self) -> dict:
        return learning.check_applied(self._step(), self.updates, self.skip_nonfinite, "td_loss",
                                      "learning_rate")

    def update_target(self) -> None:
        online = self.torso.variables + [v for h in self.heads for v in h.variables]
        target = self.target_torso.variables + [v for h in self.target_heads for v in h.variables]
        for target_variable, variable in zip(target, online):
            target_variable.assign(variable)


class HeadPolicy:
    """Greedy ALE ids for one game through the torso and that game's head."""

    def __init__(self, torso, head, legal):
        self._torso, self._head = torso, head
        self._legal = tf.constant(legal, tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([None, *envs.OBSERVATION_SHAPE], tf.uint8)])
    def _greedy(self, frames):
        q_values, _ = self._head(self._torso(frames, training=False), training=False)
        return tf.gather(self._legal, tf.argmax(q_values, axis=-1, output_type=tf.int32))

    def __call__(self, frames) -> np.ndarray:
        return self._greedy(tf.convert_to_tensor(frames)).numpy()


def _clone(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


@runtime.releases_run_dirs
def train(config) -> dict:
    """``--mode=multitask_dqn``: MDQN or MCDQN on ``config.games``; resumable."""
    if runtime.is_run_dir(config.run_dir):  # a rerun: refused at once if it is in use
        runtime.lock_run_dir(config.run_dir)
    games = list(config.games)
    legal_by_game = [envs.legal_actions(g) for g in games]
    run_dir = config.run_dir
    label = f"{config.network} {'+'.join(games)}"
    experts = None  # checked before anything is written
    if config.experts:
        try:
            experts = dict(actor_mimic.find_experts(config.experts, games))
        except config_lib.ConfigError as error:
            if config.experts_required:
                raise
            print(f"[{label}] no % of expert column: {error}")
    runtime.prepare_run_dir(run_dir, {"mode": "multitask_dqn", "games": games,
                                      "network": config.network}, config_lib.resolved_flags())
    runtime.set_seeds(config.seed, config.deterministic)
    runtime.set_precision(config.precision)
    protocol = config.env.protocol
    life_loss_terminal = envs.get_protocol(protocol).life_loss_terminal

    torso, heads = networks.multitask_dqn(config.network, [len(a) for a in legal_by_game])
    target_torso, target_heads = _clone(torso), [_clone(h) for h in heads]
    optimizer = optimizers.make_optimizer(config.optimizer, config.learning_rate, config.adam_epsilon,
                                          config.batch_per_game * len(games))
    num_envs = config.env.num_envs
    memories = [replay.ReplayMemory(config.replay_capacity, num_envs, seed=config.seed + i)
                for i, _ in enumerate(games)]
    dataset = replay.multitask_transition_dataset(memories, config.batch_per_game, config.gamma,
                                                  life_loss_terminal,
                                                  prefetch=0 if config.deterministic else 2,
                                                  n_step=config.n_step, reward_clip=config.reward_clip)
    learner = MultitaskDqnLearner(torso, heads, target_torso, target_heads, optimizer, dataset,
                                  legal_by_game, config.batch_per_game, config.double_dqn,
                                  config.skip_nonfinite)
    policies = [HeadPolicy(torso, head, legal) for head, legal in zip(heads, legal_by_game)]

    trackables = {"torso": torso, "target_torso": target_torso, "optimizer": optimizer,
                  "updates": learner.updates, "skipped": learner.skipped}
    trackables.update({f"head_{i}": h for i, h in enumerate(heads)})
    trackables.update({f"target_head_{i}": h for i, h in enumerate(target_heads)})
    save_replay = config.save_replay or config.deterministic
    run = multigame.RunState(run_dir, trackables, memories, save_replay, config.seed, label, games)
    reference = None
    if experts:  # expert scores under the same protocol, for % of expert; measured once per
        # run directory, so rerunning a finished run that lacks them fills them in
        reference, _ = actor_mimic.measure_experts(run_dir, games, experts, protocol, config, label)
    if run.finished(config.steps_per_game):
        print(f"[{label}] run already finished: {run.state['summary'].get('export')}")
        return run.state["summary"]
    writer = run.open_logs()

    def run_evaluation():
        step = run.step
        record = {"step": step, "frames": step * envs.FRAMES_PER_STEP, "games": {}}
        for index, game in enumerate(games):
            result = evaluation.play(policies[index], game, protocol, config.evaluation.episodes,
                                     config.evaluation.epsilon, config.evaluation.num_envs,
                                     config.evaluation.max_steps,
                                     config.seed + 1 + len(run.history) * 31 + index, config.env.backend)
            record["games"][game] = {**result.as_dict(), "agreement": float("nan")}
            with writer.as_default(step=step * envs.FRAMES_PER_STEP):
                tf.summary.scalar(f"eval/{game}/mean_return", result.mean)
        return run.record_eval(record)

    def summary_line(record):
        parts = []
        for game in games:
            mean = record["games"][game]["mean"]
            if reference:
                percent = actor_mimic.percent_of_expert(mean, reference[game]["mean"])
                parts.append(f"{game} {mean:.1f} ({percent:.0f}% of expert)")
            else:
                parts.append(f"{game} {mean:.1f}")
        return ", ".join(parts)

    play = multigame.GamePlay(games, memories, num_envs, protocol, config.seed, config.env.backend)
    play.new_episodes(run.step, restored=run.replay_restored and config.deterministic)
    learning_starts = run.learning_starts(config.learning_starts)
    progress = runtime.Progress(label, config.steps_per_game, run.step)
    profiler = runtime.StepProfiler(config.profile_steps, os.path.join(run_dir, "tensorboard"),
                                    int(learner.updates.numpy()))
    rng = run.rng
    last_loss = float("nan")
    with runtime.StopSignal() as stop:
        while run.step < config.steps_per_game and not stop.requested:
            # One epsilon schedule per game; the games advance in lockstep, so one value.
            epsilon = dqn.linear_epsilon(run.step, config.epsilon_start, config.epsilon_end,
                                         config.epsilon_decay_steps)
            all_actions = []
            for index, (env, obs) in enumerate(zip(play.envs, play.observations)):
                explore = rng.random(num_envs) < epsilon
                random_actions = envs.random_legal_actions(rng, env.legal_actions, num_envs)
                greedy = random_actions if explore.all() else policies[index](obs)
                all_actions.append(np.where(explore, random_actions, greedy))
            play.send(all_actions)
            if run.step >= learning_starts:
                run.update_credit += num_envs / config.update_period
                while run.update_credit >= 1.0:
                    last_loss = float(profiler.step(learner.step)["td_loss"])
                    run.update_credit -= 1.0
            play.recv()
            before = run.step
            run.step += num_envs
            step = run.step
            if runtime.crossed(before, step, config.target_update_period):
                learner.update_target()
            if runtime.crossed(before, step, config.log_period):
                fps = progress.print(step, f"loss {last_loss:.4f} | eps {epsilon:.3f} | "
                                     f"last episodes: {play.scores()}")
                with writer.as_default(step=step * envs.FRAMES_PER_STEP):
                    tf.summary.scalar("charts/frames_per_second_per_game", fps)
                    tf.summary.scalar("losses/td_loss", last_loss)
                    tf.summary.scalar("charts/epsilon", epsilon)
            if runtime.crossed(before, step, config.eval_period) and step < config.steps_per_game:
                print(f"[{label}] eval at frame {step * 4:,} per game: {summary_line(run_evaluation())}",
                      flush=True)
            run.save_if_due(before, config.checkpoint_period,
                            play.new_episodes if config.deterministic else None)
    profiler.finish()
    play.close()
    if stop.requested:
        run.save()
        print(run.stop_message())
        return {"stopped": True}
    step = run.step
    record = run.final_record(run_evaluation)
    name = config.name or os.path.basename(os.path.normpath(run_dir))
    provenance = {"frames_trained_per_game": step * envs.FRAMES_PER_STEP,
                  "network": config.network, "final_eval": record,
                  "run_dir": os.path.abspath(run_dir)}
    path = run.export_once(os.path.join(config.export_dir, "multitask_dqn", name),
                           lambda path: export.export_multitask_dqn(torso, heads, games, path,
                                                                    provenance, protocol))
    summary = {"export": path, "run_dir": run_dir, "final": record}
    run.save(finished=True, summary=summary)
    print(f"[{label}] final eval at frame {step * 4:,} per game: {summary_line(record)}")
    print(f"[{label}] SavedModel: {path}\n[{label}] TensorBoard: tensorboard --logdir "
          f"{os.path.join(run_dir, 'tensorboard')}", flush=True)
    return summary
