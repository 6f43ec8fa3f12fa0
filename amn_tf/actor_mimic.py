"""Actor-Mimic: distill expert DQNs (SavedModels) into one multitask network.

Read top to bottom: ``AmnLearner`` (a ``tf.function`` step that regresses the AMN on the
experts' policies and features read from its batch, stored there by
``experts.ExpertOutputs``, or with a batch of bare states runs every expert on its game's
slice), the experts' temperatures (``run_temperatures``), ``AmnAgent`` (every game played
by the AMN's own epsilon-greedy policy, or the expert's (throughout with ``--amn_actor=expert``,
or for the first ``--amn_expert_steps``), into its own replay memory; test
play with the Table 1 figures; export), run by ``runner.Runner``; then ``train``.

Loss of one update over G games with b states each (docs/design.md, section 1):

  L = mean_i mean_{s in game i} [ - sum_{a legal in i} softmax(Q_Ei(s)/tau_i)_a log softmax_i(AMN(s))_a
                                  + beta * 0.5 * || f_i(h_AMN(s)) - h_Ei(s) ||^2 ]

tau_i is expert i's temperature: ``--tau`` for every expert, or with ``--tau=auto`` one per
expert from its action gaps on its held-out states (``temperature.auto_temperature``).
"""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np
import tensorflow as tf

from amn_tf import (
    actors,
    checkpoints,
    cluster,
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
    temperature,
)
from amn_tf.config import ConfigError


# ------------------------------------------------------------------ learner
class AmnLearner:
    """Policy (and feature) regression of the AMN on G experts, one step per batch."""

    def __init__(self, amn, regressors, experts, masks, optimizer, dataset,
                 tau=1.0, beta=0.01, jit_compile=False, skip_nonfinite=False, strategy=None):
        """
        Args:
          amn: Keras model, uint8 frames -> (logits [B, 18], features [B, H]).
          regressors: one Keras Dense f_i per game (H -> expert feature size).
          experts: per game, a callable frames -> (q_values over the legal set, features):
            run in the step on batches of bare states (None: the batches carry the outputs).
          masks: [G, 18] bool legal actions.
          dataset: yields (states [G*b, 84, 84, 4], game_index [G*b]) grouped by game (with a
            strategy of R replicas: R such groups of b/R per game, one per replica), and with
            stored expert outputs (``ExpertOutputs``) also (q_values [G*b, 18] at ALE ids,
            features [G*b, F]), aligned with the states (``replay.multitask_state_dataset``):
            then no expert runs in the step.
          tau: the experts' temperatures, one per game in game order (a number: the same
            for every game); ``set_temperatures`` changes them before training.
          strategy: optional tf.distribute strategy (build everything in its scope).
        """
        self.amn = amn
        self.regressors = regressors
        self.experts = experts
        self.optimizer = optimizer
        self._games = len(masks)
        self._masks = tf.constant(masks, tf.bool)
        # placement[i]: [n_legal_i, 18] one-hot, so q_legal @ placement puts Q at ALE ids.
        self._placements = [tf.constant(np.eye(envs.NUM_ACTIONS, dtype=np.float32)[np.flatnonzero(m)])
                            for m in masks]
        self.temperatures = tf.Variable(self._per_game_taus(tau, self._games), trainable=False,
                                        name="temperatures")
        self._beta = float(beta)
        self.skip_nonfinite = skip_nonfinite
        self.variables = list(amn.trainable_variables)
        if self._beta > 0:
            for regressor in regressors:
                self.variables += list(regressor.trainable_variables)
        self.updates = learning.counter("updates")
        self.skipped = learning.counter("skipped_updates")
        optimizer.build(self.variables)
        self._step = learning.Stepper(self.compute, self.variables, optimizer, self.updates,
                                      self.skipped, dataset, strategy, jit_compile)

    @staticmethod
    def _per_game_taus(tau, games: int) -> np.ndarray:
        taus = np.asarray(tau, np.float32).reshape(-1)
        taus = np.full(games, taus[0], np.float32) if taus.size == 1 else taus
        if taus.shape != (games,):
            raise ValueError(f"{taus.size} temperatures for {games} games: give one per game")
        if not (np.isfinite(taus).all() and (taus > 0).all()):
            raise ValueError(f"temperatures must be positive and finite, got {taus.tolist()}")
        return taus

    def set_temperatures(self, taus) -> None:
        """The experts' temperatures, one per game in game order (read by the next step)."""
        self.temperatures.assign(self._per_game_taus(taus, self._games))

    def _per_game(self, states):
        return tf.shape(states)[0] // self._games

    def expert_targets(self, states):
        """Expert Q-values at ALE ids [B, 18] and features, game by game on its slice."""
        q_values, features = [], []
        b = self._per_game(states)
        for index, expert in enumerate(self.experts):
            q_legal, expert_features = expert(states[index * b : (index + 1) * b])
            q_values.append(tf.matmul(tf.cast(q_legal, tf.float32), self._placements[index]))
            features.append(tf.cast(expert_features, tf.float32))
        return tf.concat(q_values, 0), tf.concat(features, 0)

    def losses(self, states, game_index, expert_q, expert_features):
        mask = tf.gather(self._masks, game_index)
        logits, features = self.amn(states, training=True)
        tau = tf.gather(self.temperatures, game_index)  # each sample's game's temperature
        policy_loss = losses.policy_regression_loss(logits, expert_q, mask, tau)
        b = self._per_game(states)
        if self._beta > 0:
            predicted = tf.concat([regressor(tf.cast(features[i * b : (i + 1) * b], tf.float32))
                                   for i, regressor in enumerate(self.regressors)], 0)
            feature_loss = losses.feature_regression_loss(predicted, expert_features)
        else:
            feature_loss = tf.constant(0.0)
        agreement = tf.reduce_mean(tf.cast(tf.equal(
            losses.masked_argmax(logits, mask), losses.masked_argmax(expert_q, mask)), tf.float32))
        return policy_loss, feature_loss, agreement

    def compute(self, batch):
        """Loss (replica-scaled), gradients and metrics of one batch: (states, game_index,
        expert q_values, expert features) as stored, or (states, game_index), on which the
        experts then run here."""
        if len(batch) == 4:
            states, game_index, expert_q, expert_features = batch
            expert_q, expert_features = tf.cast(expert_q, tf.float32), tf.cast(expert_features, tf.float32)
        else:
            states, game_index = batch
            expert_q, expert_features = self.expert_targets(states)
        scale = learning.replica_scale(tf.shape(states)[0])
        with tf.GradientTape() as tape:
            policy_loss, feature_loss, agreement = self.losses(states, game_index, expert_q, expert_features)
            loss = (policy_loss + self._beta * feature_loss) * scale
        metrics = {"loss": loss, "policy_loss": policy_loss * scale,
                   "feature_loss": feature_loss * scale, "agreement": agreement * scale}
        return loss, tape.gradient(loss, self.variables), metrics

    def step(self) -> dict:
        return learning.check_applied(self._step(), self.updates, self.skip_nonfinite, "loss",
                                      "amn_learning_rate")


def check_tau_target(config, games) -> None:
    """With --tau=auto the target top-action probability must be above 1/|A| of every game."""
    if config.tau != "auto":
        return
    for game in games:
        actions = len(envs.legal_actions(game))
        if config.tau_target_top_probability <= 1.0 / actions:
            raise ConfigError(
                f"--tau_target_top_probability={config.tau_target_top_probability} is not above "
                f"1/{actions}, the top-action probability of a uniform policy over {game}'s "
                f"{actions} actions: give a value in (1/{actions}, 1)")


def run_temperatures(run_dir, games, loaded_by_game, held_out, config, label) -> dict:
    """game -> tau of its expert: ``--tau`` for every game, or with ``--tau=auto`` the
    ``temperature.auto_temperature`` of its expert's Q-values on its held-out states.

    Chosen once per run directory (``temperatures.json``) and read back on resume while
    ``--tau`` (and with auto, ``--tau_target_top_probability``) are unchanged; one line per
    game printed: tau, the median top-action probability it gives, and that at tau 1."""
    path = os.path.join(run_dir, "temperatures.json")
    target = config.tau_target_top_probability if config.tau == "auto" else None
    stored = None
    if os.path.exists(path):
        with open(path) as handle:
            stored = json.load(handle)
    if stored and stored.get("tau") == config.tau and stored.get("target_top_probability") == target \
            and sorted(stored.get("games", {})) == sorted(games):
        chosen, source = stored["games"], f"from {path}"
    else:
        if stored:
            print(f"[{label}] --tau changed since this run chose its temperatures "
                  f"({stored.get('tau')!r}, target {stored.get('target_top_probability')}): "
                  "choosing them again", flush=True)
        q_values = {g: loaded_by_game[g].outputs(held_out[g], g)["q_values"].numpy() for g in games}
        chosen = temperature.choose(config.tau, q_values, config.tau_target_top_probability)
        rule = ("auto: the median over held-out states of the top-action probability of "
                f"softmax(Q/tau) equals {target}" if target is not None else "--tau for every game")
        checkpoints.write_json_atomically(path, {"tau": config.tau, "target_top_probability": target,
                                                 "rule": rule, "games": chosen})
        source = f"{len(held_out[games[0]])} held-out states per game"
    for game in games:
        row = chosen[game]
        print(f"[{label}] tau {game}: {row['tau']:.4g} ({'auto' if target else 'fixed'}): median "
              f"top-action probability {row['median_top_probability']:.3f} (at tau 1: "
              f"{row['median_top_probability_tau1']:.3f}; {source})", flush=True)
    return {game: float(chosen[game]["tau"]) for game in games}


# ------------------------------------------------------------------- agent
class AmnAgent(runner.Agent):
    """The AMN distilled from ``experts`` (``[(game, LoadedPolicy)]``): acting in every game
    (in this process, or by Ray actors), the learner, test play with Table 1 figures, export."""

    budget_flag = "--amn_steps"

    def __init__(self, config, found_experts, run_dir):
        self.config = config
        self.games = [game for game, _ in found_experts]
        self.loaded = dict(found_experts)
        self.protocol = found_experts[0][1].protocol
        self.label = f"amn {'+'.join(self.games)}"
        self.masks = np.stack([envs.legal_mask(g) for g in self.games])
        name = config.name or os.path.basename(os.path.normpath(run_dir))
        self.export_base = os.path.join(config.export_dir, "amn", name)
        feature_sizes = [self.loaded[g].feature_size for g in self.games]
        # Each state's expert outputs, computed once as it enters its memory (this process).
        self.expert_outputs = experts.ExpertOutputs([experts.expert_callable(self.loaded[g]) for g in self.games],
                                                    self.masks, feature_sizes, features=config.beta > 0)
        streams = config.env.num_envs * max(1, config.num_actors)  # one stream per (actor, env)
        self.memories = [replay.ReplayMemory(config.replay_capacity, streams, seed=seeds.replay(config.seed, i),
                                             outputs=self.expert_outputs.memory_outputs(i))
                         for i, _ in enumerate(self.games)]
        self._build_learner(feature_sizes)
        self.students = [policies.amn_policy(self.amn, mask) for mask in self.masks]
        self.acting_policy = actors.MultitaskPolicy(self.amn, self.masks)  # every env, one pass
        self.game_of_env = np.repeat(np.arange(len(self.games), dtype=np.int32), config.env.num_envs)
        self.rng = np.random.default_rng(config.seed)
        self.play = self.ray = None
        self.acting = config.acting  # where the AMN plays now (see start)
        self.reference, self.held_out, self.taus = {}, {}, {}

    def _build_learner(self, feature_sizes) -> None:
        c = self.config
        strategy = learning.make_strategy(c.distribution, c.devices)
        dataset = replay.multitask_state_dataset(self.memories, c.batch_per_game,
                                                 prefetch=0 if c.deterministic else 2, replicas=c.devices)
        with strategy.scope() if strategy else contextlib.nullcontext():
            self.amn = networks.build_network(c.network, envs.NUM_ACTIONS, name="amn")
            regressors = networks.feature_regressors(networks.feature_size(self.amn), feature_sizes)
            optimizer = optimizers.make_optimizer(c.optimizer, c.learning_rate, 1e-7,
                                                  c.batch_per_game * len(self.games))
            self.learner = AmnLearner(self.amn, regressors, None,  # the batches carry the outputs
                                      self.masks, optimizer, dataset, 1.0, c.beta,  # taus: prepare
                                      c.jit_compile, c.skip_nonfinite, strategy)
        self.optimizer = optimizer
        self.trackables = {"amn": self.amn, "optimizer": optimizer, "updates": self.learner.updates,
                           "skipped": self.learner.skipped}
        self.trackables.update({f"regressor_{i}": r for i, r in enumerate(regressors)})

    def prepare(self, run_dir: str) -> None:
        """The experts' reference scores, held-out states and temperatures (once per run)."""
        c = self.config
        self.reference, self.held_out = experts.measure_experts(
            run_dir, self.games, self.loaded, self.protocol, c.evaluation, c.seed, c.env.backend, self.label,
            c.remeasure_experts, c.held_out_states)
        self.taus = run_temperatures(run_dir, self.games, self.loaded, self.held_out, c, self.label)
        self.learner.set_temperatures([self.taus[g] for g in self.games])

    def progress(self, fraction: float) -> None:
        """With --amn_learning_rate_end: the learning rate at this point of the run, linear from
        --amn_learning_rate at its start to the end value at its end."""
        c = self.config
        if c.learning_rate_end is not None:
            self.optimizer.learning_rate = c.learning_rate + (c.learning_rate_end - c.learning_rate) * fraction

    # ------------------------------------------------------------ acting
    def start(self, step: int, restored: bool) -> None:
        c = self.config
        experts_play = c.actor == "student" and step < c.expert_steps
        # Where the AMN plays now: the experts play their first steps between the updates.
        self.acting = "inline" if experts_play else c.acting
        if self.acting == "ray":
            self.ray = cluster.init_ray(c.ray_address)
            self.play = actors.RemoteActors(self.ray, self.games, self.memories, c.env.num_envs,
                                            self.protocol, c.env.backend, c.network, c.epsilon, c.seed,
                                            c.num_actors, c.actor_chunk_steps, c.actor_cpus,
                                            c.actor_gpus, self.expert_outputs)
            self.label += f" ({c.num_actors} actor{'s' if c.num_actors > 1 else ''})"
            self._start_actors()
            return
        if self.acting == "thread":
            self.play = actors.ThreadActors(self.games, self.memories, c.env.num_envs, self.protocol,
                                            c.env.backend, c.network, c.epsilon, c.seed, 1,
                                            c.actor_chunk_steps, self.expert_outputs)
            self._start_actors()
            return
        self.play = multigame.GamePlay(self.games, self.memories, c.env.num_envs, self.protocol,
                                       c.seed, c.env.backend, self.expert_outputs)
        self.play.new_episodes(step, restored)
        if experts_play:
            then = " in its acting thread" if c.acting == "thread" else ""
            print(f"[{self.label}] the experts play each game's agent steps {step:,} to "
                  f"{c.expert_steps:,} (--amn_expert_steps), then the AMN{then}", flush=True)

    def _start_actors(self) -> None:
        """Sets the actors (thread or Ray) playing with the learner's weights."""
        self.play.start(self.amn.get_weights())
        self.synced_at = int(self.learner.updates.numpy())

    def new_episodes(self, step: int) -> None:
        self.play.new_episodes(step)

    def act(self, step: int) -> int:
        c = self.config
        if self.acting == "inline" and c.acting == "thread" and step >= c.expert_steps:
            # The experts' steps are over: the AMN plays in its thread, on the streams the
            # experts played (its first chunk starts new episodes there, ending theirs unfinished:
            # the AMN learns from states, not transitions).
            self.play.close()
            self.start(step, False)
            print(f"[{self.label}] agent step {step:,}: the experts' steps are over, the AMN plays "
                  "in its acting thread", flush=True)
        if self.acting != "inline":  # the actors play while this process learns
            return self.play.collect()
        observations = self.play.observations
        if c.actor == "student" and step >= c.expert_steps:
            greedy = self.acting_policy(np.concatenate(observations), self.game_of_env).reshape(len(self.games), -1)
        else:
            greedy = [self._expert_greedy(index, obs) for index, obs in enumerate(observations)]
        self.play.send(self.play.explore(self.rng, self.config.epsilon, lambda index: greedy[index]))
        return self.config.env.num_envs

    def _expert_greedy(self, index: int, observations) -> np.ndarray:
        """Game ``index``'s expert's greedy ALE ids on its current observations: from the
        Q-values stored with them (the expert ran on them as they entered the memory), or,
        where none are kept (a restored deterministic run's first step), from the expert."""
        q_values = self.play.q_values_now[index]
        game = self.games[index]
        if q_values is None:
            return self.loaded[game].act(observations, game)
        legal = np.flatnonzero(self.masks[index])
        return legal[np.argmax(q_values[:, legal], axis=1)].astype(np.int32)

    def observe(self) -> list:
        if self.acting == "inline":
            return self.play.recv()
        updates = int(self.learner.updates.numpy())
        if updates - self.synced_at >= self.config.actor_sync_period:
            self.play.set_weights(self.amn.get_weights())
            self.synced_at = updates
        return self.play.take_finished()

    def close(self) -> None:
        if self.play is not None:
            self.play.close()
        if self.ray is not None:
            self.ray.shutdown()
            self.ray = None

    # ------------------------------------------------------------ reporting
    def train_scalars(self, metrics: dict, fps: float) -> dict:
        scalars = {"charts/frames_per_second_per_game": fps}
        if metrics:
            scalars.update({"losses/loss": float(metrics["loss"]),  # the total the update minimises
                            "losses/policy_regression": float(metrics["policy_loss"]),
                            "losses/feature_regression": float(metrics["feature_loss"]),
                            "train/agreement": float(metrics["agreement"]),
                            "charts/learning_rate": float(self.optimizer.learning_rate)})
        return scalars

    def evaluate(self, step: int, plays_so_far: int) -> tuple:
        c = self.config
        record = {"step": step, "frames": step * envs.FRAMES_PER_STEP, "games": {}}
        scalars = {}
        played = evaluation.test_plays(self.students, self.games, self.protocol, c.evaluation, c.seed,
                                       plays_so_far, c.env.backend, self.label)
        for student, game, result in zip(self.students, self.games, played):
            match = experts.agreement(student, self.loaded[game], game, self.held_out[game])
            record["games"][game] = {**result.as_dict(), "agreement": match}
            scalars.update({f"eval/{game}/mean_return": result.mean, f"eval/{game}/agreement": match,
                            f"eval/{game}/percent_of_expert":
                                tables.percent_of_expert(result.mean, self.reference[game]["mean"])})
        return record, scalars

    def eval_text(self, record: dict) -> str:
        return "\n" + tables.table(tables.rows_of(record, self.reference, self.games))

    # ------------------------------------------------------------ export
    def export(self, path: str, record: dict, step: int, run_dir: str) -> None:
        c = self.config
        provenance = {"frames_trained_per_game": step * envs.FRAMES_PER_STEP, "agent_steps_per_game": step,
                      "experts": {g: self.reference[g]["path"] for g in self.games},
                      "table": tables.rows_of(record, self.reference, self.games),
                      "network": c.network, "tau": c.tau, "beta": c.beta,
                      "tau_target_top_probability": c.tau_target_top_probability if c.tau == "auto" else None,
                      "run_dir": run_dir}
        export.export_multitask(self.amn, self.games, path, provenance, self.protocol, kind="amn",
                                temperatures=self.taus)

    def summary(self, record: dict, path: str, step: int) -> dict:
        return {"table": tables.rows_of(record, self.reference, self.games)}


def train(config) -> dict:
    """``--mode=amn``: distills the experts into an AMN; resumable from ``run_dir``."""
    found = experts.find_experts(config.experts, config.games)
    games = [game for game, _ in found]
    check_tau_target(config, games)
    experts.describe_experts(found, f"amn {'+'.join(games)}")
    run_dir = config.run_dir or os.path.join("runs", "amn-" + "-".join(games))
    return runner.launch(run_dir, {"mode": "amn", "games": games, "network": config.network}, config,
                         runner.schedule_of(config, config.steps_per_game, per_game=True),
                         lambda _: AmnAgent(config, found, run_dir),
                         replay_flags=rundirs.AMN_REPLAY_FLAGS)
