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
    envs,
    evaluation,
    experts,
    export,
    learning,
    losses,
    multigame,
    networks,
    optimizers,
    policies,
    replay,
    rundirs,
    runner,
    seeds,
    tables,
)
from amn_tf.config import ConfigError


class MultitaskDqnLearner:
    def __init__(self, torso, heads, target_torso, target_heads, optimizer, dataset, legal_by_game,
                 batch_per_game, double_dqn=True, skip_nonfinite=False):
        self.torso, self.heads = torso, heads
        self.target_torso, self.target_heads = target_torso, target_heads
        self.optimizer = optimizer
        tables = [policies.action_tables(legal, len(legal))[2] for legal in legal_by_game]
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


def _clone(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


class MultitaskDqnAgent(multigame.EpsilonGreedyPlay, runner.Agent):
    """MDQN or MCDQN on ``config.games``: epsilon-greedy acting through each game's head,
    Q-learning, test play (with % of expert when experts are given), export."""

    budget_flag = "--training_steps"

    def __init__(self, config, found_experts=None):
        self.config = config
        self.games = list(config.games)
        self.label = f"{config.network} {'+'.join(self.games)}"
        self.found_experts = found_experts
        self.reference = None
        name = config.name or os.path.basename(os.path.normpath(config.run_dir))
        self.export_base = os.path.join(config.export_dir, "multitask_dqn", name)
        legal_by_game = [envs.legal_actions(g) for g in self.games]
        self.memories = [replay.ReplayMemory(config.replay_capacity, config.env.num_envs,
                                             seed=seeds.replay(config.seed, i))
                         for i, _ in enumerate(self.games)]
        self._build_learner(legal_by_game)
        self.policies = policies.HeadPolicies(self.torso, self.heads, legal_by_game).per_game
        self.rng = np.random.default_rng(config.seed)
        self.play = multigame.GamePlay(self.games, self.memories, config.env.num_envs,
                                       config.env.protocol, config.seed, config.env.backend)
        self.epsilon = config.epsilon_start

    def _build_learner(self, legal_by_game) -> None:
        c = self.config
        self.torso, self.heads = networks.multitask_dqn(c.network, [len(a) for a in legal_by_game])
        target_torso, target_heads = _clone(self.torso), [_clone(h) for h in self.heads]
        optimizer = optimizers.make_optimizer(c.optimizer, c.learning_rate, c.adam_epsilon,
                                              c.batch_per_game * len(self.games))
        life_loss_terminal = envs.get_protocol(c.env.protocol).life_loss_terminal
        dataset = replay.multitask_transition_dataset(self.memories, c.batch_per_game, c.gamma,
                                                      life_loss_terminal,
                                                      prefetch=0 if c.deterministic else 2,
                                                      n_step=c.n_step, reward_clip=c.reward_clip)
        self.learner = MultitaskDqnLearner(self.torso, self.heads, target_torso, target_heads, optimizer,
                                           dataset, legal_by_game, c.batch_per_game, c.double_dqn,
                                           c.skip_nonfinite)
        self.trackables = {"torso": self.torso, "target_torso": target_torso, "optimizer": optimizer,
                           "updates": self.learner.updates, "skipped": self.learner.skipped}
        self.trackables.update({f"head_{i}": h for i, h in enumerate(self.heads)})
        self.trackables.update({f"target_head_{i}": h for i, h in enumerate(target_heads)})

    def prepare(self, run_dir: str) -> None:
        """Expert scores under the same protocol, for % of expert (no held-out states: nothing
        here reads them); measured once per run directory, so rerunning a finished run that
        lacks them fills them in."""
        if self.found_experts:
            c = self.config
            self.reference, _ = experts.measure_experts(run_dir, self.games, self.found_experts,
                                                        c.env.protocol, c.evaluation, c.seed,
                                                        c.env.backend, self.label,
                                                        c.remeasure_experts, held_out_states=0)

    # ------------------------------------------------------------ reporting
    def train_scalars(self, metrics: dict, fps: float) -> dict:
        scalars = {"charts/frames_per_second_per_game": fps, "charts/epsilon": self.epsilon}
        if metrics:
            scalars["losses/td_loss"] = float(metrics["td_loss"])
        return scalars

    def evaluate(self, step: int, plays_so_far: int) -> tuple:
        c = self.config
        record = {"step": step, "frames": step * envs.FRAMES_PER_STEP, "games": {}}
        played = evaluation.test_plays(self.policies, self.games, c.env.protocol, c.evaluation, c.seed,
                                       plays_so_far, c.env.backend, self.label)
        for game, result in zip(self.games, played):
            record["games"][game] = {**result.as_dict(), "agreement": float("nan")}
        return record, {f"eval/{g}/mean_return": record["games"][g]["mean"] for g in self.games}

    def eval_text(self, record: dict) -> str:
        return tables.scores_line(record, self.games, self.reference)

    # ------------------------------------------------------------ export
    def export(self, path: str, record: dict, step: int, run_dir: str) -> None:
        provenance = {"frames_trained_per_game": step * envs.FRAMES_PER_STEP,
                      "network": self.config.network, "final_eval": record,
                      "run_dir": run_dir}
        export.export_multitask_dqn(self.torso, self.heads, self.games, path, provenance,
                                    self.config.env.protocol)

    def summary(self, record: dict, path: str, step: int) -> dict:
        return {"final": record}


def train(config) -> dict:
    """``--mode=multitask_dqn``: MDQN or MCDQN on ``config.games``; resumable."""
    label = f"{config.network} {'+'.join(config.games)}"
    found = None  # checked before anything is written
    if config.experts:
        try:
            found = dict(experts.find_experts(config.experts, list(config.games)))
        except ConfigError as error:
            if config.experts_required:
                raise
            print(f"[{label}] no % of expert column: {error}")
    schedule = runner.schedule_of(config, config.steps_per_game, config.target_update_period, per_game=True)
    return runner.launch(config.run_dir, {"mode": "multitask_dqn", "games": list(config.games),
                                          "network": config.network}, config, schedule,
                         lambda _: MultitaskDqnAgent(config, found), replay_flags=rundirs.DQN_REPLAY_FLAGS)
