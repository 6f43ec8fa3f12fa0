"""The Q-learning agent of one game: ``DqnLearner`` (a ``tf.function`` step pulling batches
from the replay's tf.data pipeline) and ``DqnAgent`` (epsilon-greedy acting, test play and
export around it), run by ``runner.Runner``. ``--mode=dqn`` trains experts with it and
``--mode=transfer`` trains from an AMN's weights with it.
"""

from __future__ import annotations

import contextlib
import os

import keras
import numpy as np
import tensorflow as tf

from amn_tf import (
    envs,
    evaluation,
    export,
    learning,
    losses,
    multigame,
    networks,
    optimizers,
    policies,
    replay,
    runner,
    seeds,
)


class DqnLearner:
    """Q-learning from replay with a target network.

    target = r_t + discount_t * Q_target(s_t, argmax_{a legal} Q(s_t, a))   (double DQN)
    target = r_t + discount_t * max_{a legal} Q_target(s_t, a)             (DQN)
    loss   = mean Huber(target - Q(s_tm1, a_tm1))   (TD error clipped to [-1, 1] in the gradient)

    The dataset's batches carry the (clipped, possibly n-step) return ``r_t`` and the
    discount to the bootstrap state ``s_t`` (``replay.transition_dataset``).
    """

    def __init__(self, online, target, optimizer, dataset, action_to_output, output_mask,
                 double_dqn=True, jit_compile=False, skip_nonfinite=False, strategy=None,
                 batch_loss="mean"):
        """With ``strategy`` (a tf.distribute strategy), build the networks, the optimizer and
        this learner inside ``strategy.scope()``; each replica takes a slice of the batch.
        ``batch_loss`` 'sum' sums the loss over the batch (the authors' gradient scale)."""
        self.online = online
        self.target = target
        self.optimizer = optimizer
        self._action_to_output = tf.constant(action_to_output, tf.int32)
        self._output_mask = tf.constant(output_mask, tf.bool)
        self._double = double_dqn
        self._batch_loss = batch_loss
        self.skip_nonfinite = skip_nonfinite
        self.updates = learning.counter("updates")
        self.skipped = learning.counter("skipped_updates")
        optimizer.build(online.trainable_variables)
        self._step = learning.Stepper(self.compute, online.trainable_variables, optimizer,
                                      self.updates, self.skipped, dataset, strategy, jit_compile)
        self._update = tf.function(self._step.run)  # one update on a given batch

    def targets(self, batch):
        """Inputs of the TD target, computed outside the gradient tape."""
        q_t_target, _ = self.target(batch["s_t"], training=False)
        q_t_online = self.online(batch["s_t"], training=False)[0] if self._double else None
        return batch["r_t"], q_t_target, q_t_online

    def loss(self, batch, targets=None):
        r_t, q_t_target, q_t_online = targets or self.targets(batch)
        a_tm1 = tf.gather(self._action_to_output, batch["a_tm1"])
        q_tm1, _ = self.online(batch["s_tm1"], training=True)
        return losses.td_loss(q_tm1, a_tm1, r_t, batch["discount_t"], q_t_target,
                              q_t_online, self._output_mask, reduction=self._batch_loss)

    def compute(self, batch):
        """Loss (replica-scaled), gradients and metrics of one batch."""
        variables = self.online.trainable_variables
        targets = self.targets(batch)
        with tf.GradientTape() as tape:
            loss = self.loss(batch, targets)
            if self._batch_loss == "mean":  # each replica's mean weighs its share; sums just add
                loss *= learning.replica_scale(tf.shape(batch["a_tm1"])[0])
        return loss, tape.gradient(loss, variables), {"td_loss": loss}

    def step(self) -> dict:
        return learning.check_applied(self._step(), self.updates, self.skip_nonfinite, "td_loss",
                                      "learning_rate")

    def update_target(self) -> None:
        for target_variable, variable in zip(self.target.variables, self.online.variables):
            target_variable.assign(variable)


def _online_network(legal, network, dueling=False):
    """A fresh Nature DQN over the legal set (``dueling``: with a dueling head), or a copy of
    ``network`` (transfer: its architecture and weights, built in the current strategy scope)."""
    if network is None:
        return networks.nature_dqn(len(legal), name="online", dueling=dueling)
    online = keras.models.clone_model(network)
    online.set_weights(network.get_weights())
    return online


class DqnAgent(multigame.EpsilonGreedyPlay, runner.Agent):
    """One game: epsilon-greedy acting from the online network, Q-learning from replay,
    test play, export as an expert (or a transferred DQN)."""

    budget_flag = "--training_steps"

    def __init__(self, config, network=None, export_kind="experts", export_name=None):
        """``config``: a ``config.DqnConfig``; ``network``: an initial online network."""
        self.config = config
        self.game = config.game
        self.games = [config.game]
        self.label = f"dqn {config.game}"
        self.export_kind = export_kind
        self.export_base = os.path.join(config.export_dir, export_kind, export_name or config.game)
        legal = envs.legal_actions(config.game)
        self.memories = [replay.ReplayMemory(config.replay_capacity, config.env.num_envs,
                                             seed=seeds.replay(config.seed, 0))]
        self._build_learner(legal, network)
        self.policy = policies.GreedyPolicy(self.online, self._output_actions, self._output_mask)
        self.policies = [self.policy]  # acting: multigame.EpsilonGreedyPlay
        self.rng = np.random.default_rng(config.seed)
        self.play = multigame.GamePlay(self.games, self.memories, config.env.num_envs,
                                       config.env.protocol, config.seed, config.env.backend)
        self.trackables = {"online": self.online, "target": self.learner.target,
                           "optimizer": self.learner.optimizer, "updates": self.learner.updates,
                           "skipped": self.learner.skipped}
        self.epsilon = config.epsilon_start

    def _build_learner(self, legal, network) -> None:
        c = self.config
        strategy = learning.make_strategy(c.distribution, c.devices)
        life_loss_terminal = envs.get_protocol(c.env.protocol).life_loss_terminal
        dataset = replay.transition_dataset(self.memories[0], c.batch_size, c.gamma, life_loss_terminal,
                                            prefetch=0 if c.deterministic else 2, n_step=c.n_step,
                                            reward_clip=c.reward_clip)
        with strategy.scope() if strategy else contextlib.nullcontext():
            self.online = _online_network(legal, network, c.dueling)
            target = keras.models.clone_model(self.online)
            target.set_weights(self.online.get_weights())
            self._output_actions, self._output_mask, action_to_output = policies.action_tables(
                legal, self.online.outputs[0].shape[-1])
            optimizer = optimizers.make_optimizer(c.optimizer, c.learning_rate, c.adam_epsilon, c.batch_size)
            self.learner = DqnLearner(self.online, target, optimizer, dataset, action_to_output,
                                      self._output_mask, c.double_dqn, c.jit_compile, c.skip_nonfinite,
                                      strategy, c.batch_loss)

    # ------------------------------------------------------------ reporting
    def train_scalars(self, metrics: dict, fps: float) -> dict:
        scalars = {"charts/SPS": fps / envs.FRAMES_PER_STEP, "charts/frames_per_second": fps,
                   "charts/epsilon": self.epsilon}
        if metrics:
            scalars["losses/td_loss"] = float(metrics["td_loss"])
        return scalars

    def evaluate(self, step: int, plays_so_far: int) -> tuple:
        c = self.config
        result = evaluation.play(self.policy, self.game, c.env.protocol, c.evaluation.episodes,
                                 c.evaluation.epsilon, c.evaluation.num_envs, c.evaluation.max_steps,
                                 seeds.test_play(c.seed, plays_so_far), c.env.backend,
                                 progress=evaluation.PlayProgress(f"[{self.label}] test play"))
        record = {"step": step, "frames": step * envs.FRAMES_PER_STEP, **result.as_dict()}
        return record, {"eval/mean_return": result.mean, "eval/max_return": result.max}

    def eval_text(self, record: dict) -> str:
        return evaluation.EvalResult.from_dict(record).line()

    # ------------------------------------------------------------ export
    def export(self, path: str, record: dict, step: int, run_dir: str) -> None:
        final = evaluation.EvalResult.from_dict(record).as_dict()
        provenance = {"frames_trained": step * envs.FRAMES_PER_STEP, "agent_steps": step,
                      "final_eval": final, "run_dir": run_dir,
                      "flags": self.config.flags}
        kind = "expert" if self.export_kind == "experts" else self.export_kind
        export.export_expert(self.online, self.game, path, provenance, self.config.env.protocol, kind=kind)

    def summary(self, record: dict, path: str, step: int) -> dict:
        return {"game": self.game, "final_eval": evaluation.EvalResult.from_dict(record).as_dict(),
                "frames": step * envs.FRAMES_PER_STEP}


def schedule(config) -> runner.Schedule:
    """The run loop's schedule of a ``config.DqnConfig`` (experts and transfer alike)."""
    return runner.schedule_of(config, config.training_steps, config.target_update_period,
                              keep_best=config.keep_best)
