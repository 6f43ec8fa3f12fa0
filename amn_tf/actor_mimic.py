"""Actor-Mimic: distill expert DQNs (SavedModels) into one multitask network.

Read top to bottom: ``find_experts`` (which SavedModels teach which game),
``ExpertOutputs`` (every expert run once on each state its game's replay memory receives:
its Q-values, and its features when feature regression is on, stored beside the frame),
``AmnLearner`` (a ``tf.function`` step that regresses the AMN on the experts' policies and
features read from its batch, or with a batch of bare states runs every expert on its
game's slice), then ``train``: every game played by the AMN's own epsilon-greedy policy (or
the expert's) into its own replay memory, one update per ``update_period`` agent steps per
game, periodic test play with the Table 1 figures, checkpoints and export.

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
    temperature,
)
from amn_tf import (
    config as config_lib,
)

HELD_OUT_STATES = 256  # per game, for the action-agreement figure


# ------------------------------------------------------------------ experts
def _newest_version(directory: str) -> str | None:
    versions = [n for n in os.listdir(directory) if n.isdigit()
                and os.path.exists(os.path.join(directory, n, "saved_model.pb"))]
    return os.path.join(directory, max(versions, key=int)) if versions else None


def find_experts(paths, games=None) -> list:
    """Resolves ``--experts`` into ``[(game, SavedModel path)]`` in a stable order.

    Each path is a SavedModel version directory, a ``<Game>/`` directory of versions (the
    newest is taken) or a directory of such game directories.
    """
    found = []
    for path in paths:
        if not os.path.isdir(path):
            raise config_lib.ConfigError(f"expert path {path} does not exist")
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            candidates = [path]
        elif _newest_version(path):
            candidates = [_newest_version(path)]
        else:
            candidates = [v for v in (_newest_version(os.path.join(path, d))
                                      for d in sorted(os.listdir(path))
                                      if os.path.isdir(os.path.join(path, d))) if v]
        if not candidates:
            raise config_lib.ConfigError(
                f"no expert SavedModels found in {path} (expected <Game>/<version>/saved_model.pb); "
                "train one with --mode=dqn or pass --experts=PATH")
        found.extend(candidates)
    experts = []
    for path in found:
        loaded = export.LoadedPolicy(path)
        if loaded.kind != "expert":
            raise config_lib.ConfigError(f"{path} is a {loaded.kind} SavedModel, not an expert")
        experts.append((loaded.games[0], loaded))
    names = [game for game, _ in experts]
    twice = sorted({g for g in names if names.count(g) > 1})
    if twice:
        raise config_lib.ConfigError(f"more than one expert for {', '.join(twice)}: pass one "
                                     "SavedModel per game in --experts")
    if games:
        missing = [g for g in games if g not in names]
        if missing:
            raise config_lib.ConfigError(f"no expert for {', '.join(missing)} among "
                                         f"{', '.join(names)}; add one to --experts")
        experts = [(g, dict(experts)[g]) for g in games]
    protocols = {loaded.protocol for _, loaded in experts}
    if len(protocols) > 1:
        raise config_lib.ConfigError(f"experts were trained under different protocols {sorted(protocols)}")
    return experts


def describe_experts(experts, label) -> None:
    """One line per expert: where it is and what its export says it is (provenance)."""
    for game, loaded in experts:
        provenance = loaded.metadata.get("provenance", {})
        frames = provenance.get("frames_trained")
        final = provenance.get("final_eval") or {}
        trained = f"{frames:,} frames" if isinstance(frames, int) else "frames unknown"
        scored = (f"its last test play {final['mean']:.1f} over {final.get('episodes', '?')} episodes"
                  if "mean" in final else "no recorded test play")
        print(f"[{label}] expert {game}: {loaded.path} ({trained}, {scored}, trained in "
              f"{provenance.get('run_dir', 'an unknown run')})", flush=True)


def warn_weak_experts(reference, label) -> list:
    """Warns about experts whose measured mean is not above random play's; returns them."""
    weak = [game for game, row in reference.items()
            if "random_mean" in row and row["mean"] <= row["random_mean"]]
    for game in weak:
        row = reference[game]
        print(f"[{label}] WARNING: expert {game} ({row['path']}) plays no better than random "
              f"({row['mean']:.1f} vs random {row['random_mean']:.1f} over {row['episodes']} "
              "episodes): the AMN would learn nothing useful from it; retrain it or leave it out "
              "with --games", flush=True)
    return weak


# ------------------------------------------------------------ expert outputs
FLOAT16_MAX = float(np.finfo(np.float16).max)


class ExpertOutputs:
    """The experts' outputs on the states written into the AMN's replay memories, computed
    once per state when it is written, in the learner process, so that an update only reads
    them from its batch instead of running G experts on it.

    ``outputs([states of game 0, states of game 1, ...])`` runs every expert on its game's
    new states (``[n_i, 84, 84, 4]`` uint8) in one TensorFlow call and returns, per game,
    ``{"q_values": [n_i, 18] float32, "features": [n_i, F] float16}``: Q-values over the
    game's legal actions placed at their ALE ids (0 elsewhere: masked in every use), exactly
    as the expert gave them; features (its last hidden layer) only when ``features`` (feature
    regression on, beta > 0), rounded to float16 (clipped to its range). ``memory_outputs(i)``
    is what game i's ``replay.ReplayMemory`` is told to store: 72 B of Q-values (+ 2 F B of
    features) per entry beside its 7,062 B.

    Args:
      experts: per game, a callable frames -> (q_values over the legal set, features).
      masks: [G, 18] bool legal actions.
      feature_sizes: per game, the expert's feature size.
      features: store the features too (``beta > 0``).
    """

    def __init__(self, experts, masks, feature_sizes, features: bool):
        self._experts = list(experts)
        self.features = bool(features)
        self._feature_sizes = [int(f) for f in feature_sizes]
        # column[i][a]: where ALE id a is in game i's legal Q-values (n_legal: a zero column).
        self._columns = []
        for mask in np.asarray(masks, bool):
            column = np.full(envs.NUM_ACTIONS, mask.sum(), np.int32)
            column[mask] = np.arange(mask.sum())
            self._columns.append(tf.constant(column))
        spec = [tf.TensorSpec([None, *envs.OBSERVATION_SHAPE], tf.uint8)] * len(self._experts)
        self._run = tf.function(self._outputs, input_signature=[spec])

    def __len__(self) -> int:
        return len(self._experts)

    def of_game(self, index: int, states) -> dict:
        """The outputs of one game's states (tests, benchmarks; training batches all games)."""
        empty = np.zeros((0, *envs.OBSERVATION_SHAPE), np.uint8)
        return self([states if i == index else empty for i in range(len(self))])[index]

    def memory_outputs(self, index: int) -> dict:
        spec = {"q_values": ((envs.NUM_ACTIONS,), np.float32)}
        if self.features:
            spec["features"] = ((self._feature_sizes[index],), np.float16)
        return spec

    def _outputs(self, states):
        result = []
        for expert, column, frames in zip(self._experts, self._columns, states):
            q_legal, features = expert(frames)
            q_legal = tf.cast(q_legal, tf.float32)
            padded = tf.concat([q_legal, tf.zeros_like(q_legal[:, :1])], 1)
            row = {"q_values": tf.gather(padded, column, axis=1)}  # a copy: exact
            if self.features:
                row["features"] = tf.cast(tf.clip_by_value(tf.cast(features, tf.float32),
                                                           -FLOAT16_MAX, FLOAT16_MAX), tf.float16)
            result.append(row)
        return result

    def __call__(self, states_per_game) -> list:
        if len(states_per_game) != len(self._experts):
            raise ValueError(f"states of {len(states_per_game)} games for {len(self._experts)} experts")
        counts = [len(states) for states in states_per_game]
        # An empty batch would fail in the convolutions: run one blank state and keep none.
        outputs = self._run([tf.convert_to_tensor(states if len(states) else
                                                  np.zeros((1, *envs.OBSERVATION_SHAPE), np.uint8), tf.uint8)
                             for states in states_per_game])
        return [{name: value.numpy()[:count] for name, value in row.items()}
                for row, count in zip(outputs, counts)]


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


def expert_callable(loaded: export.LoadedPolicy):
    signature = loaded.signature

    def call(frames):
        out = signature(frames=frames)
        return out["q_values"], out["features"]

    return call


# ----------------------------------------------------------- held-out states
def collect_held_out(loaded, game, protocol, count, seed, backend) -> np.ndarray:
    """States visited by the expert at epsilon 0.05, spread over its play."""
    env = envs.make_env(game, 4, protocol, seed, backend)
    rng = np.random.default_rng(seed)
    states = []
    try:
        obs = env.reset()
        step = 0
        while len(states) * 4 < count:
            greedy = loaded.act(obs, game)
            explore = rng.random(len(obs)) < 0.05
            actions = np.where(explore, envs.random_legal_actions(rng, env.legal_actions, len(obs)),
                               greedy).astype(np.int32)
            result = env.step(actions)
            obs = result.obs
            step += 1
            if step % 8 == 0:  # decorrelate
                states.append(obs.copy())
    finally:
        env.close()
    return np.concatenate(states)[:count]


def agreement(amn_policy, loaded, game, states) -> float:
    """Fraction of held-out states where the AMN's greedy action is the expert's."""
    return float(np.mean(amn_policy(states) == loaded.act(states, game)))


# ------------------------------------------------------------------- train
def table(rows, kind: str = "AMN") -> str:
    """Per-game Table 1 figures as Markdown (``kind``: whose scores, e.g. AMN or MDQN;
    agreement is "-" where the run has none)."""
    lines = [f"| game | expert mean | expert max | {kind} mean | {kind} max | {kind} % of expert "
             "| agreement |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        agreement = row["agreement"]
        agreement = "-" if agreement != agreement else f"{100 * agreement:.0f}%"  # NaN: none
        lines.append(f"| {row['game']} | {row['expert_mean']:.1f} | {row['expert_max']:.1f} | "
                     f"{row['amn_mean']:.1f} | {row['amn_max']:.1f} | {row['percent']:.0f}% | "
                     f"{agreement} |")
    return "\n".join(lines)


def percent_of_expert(amn_score, expert_score, random_score=None) -> float:
    """AMN score as % of the expert's (plain ratio, as in the paper's Table 1)."""
    if expert_score == 0:
        return float("nan")
    return 100.0 * amn_score / expert_score


def measure_experts(run_dir, games, loaded_by_game, protocol, config, label) -> tuple:
    """Expert scores under the run's protocol and held-out expert states, measured once per
    run directory (``experts.json``, ``held_out.npz``) and read back on resume."""
    reference_path = os.path.join(run_dir, "experts.json")
    held_out_path = os.path.join(run_dir, "held_out.npz")
    if os.path.exists(reference_path) and os.path.exists(held_out_path):
        with open(reference_path) as handle:
            reference = json.load(handle)
        with np.load(held_out_path, allow_pickle=False) as data:
            held_out = {g: data[g] for g in games}
    else:
        reference, held_out = {}, {}
        for index, game in enumerate(games):
            loaded = loaded_by_game[game]
            result = evaluation.play(evaluation.saved_model_policy(loaded, game), game, protocol,
                                     config.evaluation.episodes, config.evaluation.epsilon,
                                     config.evaluation.num_envs, config.evaluation.max_steps,
                                     config.seed + 101 + index, config.env.backend)
            random_play = evaluation.play(None, game, protocol, config.evaluation.episodes, 1.0,
                                          config.evaluation.num_envs, config.evaluation.max_steps,
                                          config.seed + 303 + index, config.env.backend)
            reference[game] = {"path": loaded.path, **result.as_dict(),
                               "random_mean": random_play.mean}
            held_out[game] = collect_held_out(loaded, game, protocol, HELD_OUT_STATES,
                                              config.seed + 202 + index, config.env.backend)
            print(f"[{label}] expert {result.line()} | random play {random_play.mean:.1f}", flush=True)
        np.savez(held_out_path + ".tmp.npz", **held_out)
        os.replace(held_out_path + ".tmp.npz", held_out_path)
        checkpoints.write_json_atomically(reference_path, reference)

    warn_weak_experts(reference, label)
    return reference, held_out


def check_tau_target(config, games) -> None:
    """With --tau=auto the target top-action probability must be above 1/|A| of every game."""
    if config.tau != "auto":
        return
    for game in games:
        actions = len(envs.legal_actions(game))
        if config.tau_target_top_probability <= 1.0 / actions:
            raise config_lib.ConfigError(
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


@runtime.releases_run_dirs
def train(config) -> dict:
    """``--mode=amn``: distills the experts into an AMN; resumable from ``run_dir``."""
    if config.run_dir and runtime.is_run_dir(config.run_dir):  # a rerun: refused at once if in use
        runtime.lock_run_dir(config.run_dir)
    experts = find_experts(config.experts, config.games)
    games = [game for game, _ in experts]
    check_tau_target(config, games)
    describe_experts(experts, f"amn {'+'.join(games)}")
    loaded_by_game = dict(experts)
    protocol = experts[0][1].protocol
    run_dir = config.run_dir or os.path.join("runs", "amn-" + "-".join(games))
    runtime.prepare_run_dir(run_dir, {"mode": "amn", "games": games, "network": config.network},
                            config_lib.resolved_flags())
    runtime.set_seeds(config.seed, config.deterministic)
    runtime.set_precision(config.precision)
    label = f"amn {'+'.join(games)}"

    masks = np.stack([envs.legal_mask(g) for g in games])
    strategy = learning.make_strategy(config.distribution, config.devices)
    num_envs = config.env.num_envs
    streams = num_envs * max(1, config.num_actors)  # one stream per (actor, env)
    callables = [expert_callable(loaded_by_game[g]) for g in games]
    # Each state's expert outputs, computed once as it enters its memory (this process).
    expert_outputs = ExpertOutputs(callables, masks, [loaded_by_game[g].feature_size for g in games],
                                   features=config.beta > 0)
    memories = [replay.ReplayMemory(config.replay_capacity, streams, seed=config.seed + i,
                                    outputs=expert_outputs.memory_outputs(i))
                for i, _ in enumerate(games)]
    dataset = replay.multitask_state_dataset(memories, config.batch_per_game,
                                             prefetch=0 if config.deterministic else 2,
                                             replicas=config.devices)
    with strategy.scope() if strategy else contextlib.nullcontext():
        amn = networks.build_network(config.network, envs.NUM_ACTIONS, name="amn")
        regressors = networks.feature_regressors(networks.feature_size(amn),
                                                 [loaded_by_game[g].feature_size for g in games])
        optimizer = optimizers.make_optimizer(config.optimizer, config.learning_rate, 1e-7,
                                              config.batch_per_game * len(games))
        learner = AmnLearner(amn, regressors, None,  # the dataset carries the experts' outputs
                             masks, optimizer, dataset, 1.0, config.beta,  # taus: run_temperatures
                             config.jit_compile, config.skip_nonfinite, strategy)
    students = [dqn.GreedyPolicy(amn, np.arange(envs.NUM_ACTIONS, dtype=np.int32), m) for m in masks]
    acting_policy = actors.MultitaskPolicy(amn, masks)  # all games' envs in one forward pass

    trackables = {"amn": amn, "optimizer": optimizer, "updates": learner.updates,
                  "skipped": learner.skipped}
    trackables.update({f"regressor_{i}": r for i, r in enumerate(regressors)})
    save_replay = config.save_replay or config.deterministic  # see dqn.train
    run = multigame.RunState(run_dir, trackables, memories, save_replay, config.seed, label, games)
    if run.finished(config.steps_per_game):
        print(f"[{label}] run already finished: {run.state['summary'].get('export')}")
        print(table(run.state["summary"]["table"]))
        return run.state["summary"]

    reference, held_out = measure_experts(run_dir, games, loaded_by_game, protocol, config, label)
    taus = run_temperatures(run_dir, games, loaded_by_game, held_out, config, label)
    learner.set_temperatures([taus[g] for g in games])
    writer = run.open_logs()

    def rows_of(record):
        rows = []
        for game in games:
            mine, theirs = record["games"][game], reference[game]
            rows.append({"game": game, "expert_mean": theirs["mean"], "expert_max": theirs["max"],
                         "amn_mean": mine["mean"], "amn_max": mine["max"],
                         "percent": percent_of_expert(mine["mean"], theirs["mean"]),
                         "agreement": mine["agreement"]})
        return rows

    def run_evaluation():
        step = run.step
        record = {"step": step, "frames": step * envs.FRAMES_PER_STEP, "games": {}}
        for index, game in enumerate(games):
            result = evaluation.play(students[index], game, protocol, config.evaluation.episodes,
                                     config.evaluation.epsilon, config.evaluation.num_envs,
                                     config.evaluation.max_steps,
                                     config.seed + 1 + len(run.history) * 31 + index, config.env.backend)
            match = agreement(students[index], loaded_by_game[game], game, held_out[game])
            record["games"][game] = {**result.as_dict(), "agreement": match}
            with writer.as_default(step=step * envs.FRAMES_PER_STEP):
                tf.summary.scalar(f"eval/{game}/mean_return", result.mean)
                tf.summary.scalar(f"eval/{game}/percent_of_expert",
                                  percent_of_expert(result.mean, reference[game]["mean"]))
                tf.summary.scalar(f"eval/{game}/agreement", match)
        return run.record_eval(record)

    if config.num_actors:
        from amn_tf import fanout

        ray = fanout.init_ray(config.ray_address)
        play = actors.RemoteActors(ray, games, memories, num_envs, protocol, config.env.backend,
                                       config.network, config.epsilon, config.seed,
                                       config.num_actors, config.actor_chunk_steps,
                                       config.actor_cpus, config.actor_gpus, expert_outputs)
        play.start(amn.get_weights())
        label += f" ({config.num_actors} actors)"
    else:
        play = multigame.GamePlay(games, memories, num_envs, protocol, config.seed, config.env.backend,
                                  expert_outputs)
        play.new_episodes(run.step, restored=run.replay_restored and config.deterministic)
    learning_starts = run.learning_starts(config.learning_starts)
    progress = runtime.Progress(label, config.steps_per_game, run.step)
    profiler = runtime.StepProfiler(config.profile_steps, os.path.join(run_dir, "tensorboard"),
                                    int(learner.updates.numpy()))
    game_of_env = np.repeat(np.arange(len(games), dtype=np.int32), num_envs)
    rng = run.rng
    last = {}

    def learn(steps_added):
        nonlocal last
        if run.step < learning_starts:
            return
        run.update_credit += steps_added / config.update_period
        while run.update_credit >= 1.0:
            last = profiler.step(learner.step)
            run.update_credit -= 1.0

    def advance(steps_added):
        before = run.step
        run.step += steps_added
        step = run.step
        if runtime.crossed(before, step, config.log_period):
            loss_text = f"loss {float(last['loss']):.4f} agree {float(last['agreement']):.2f}" \
                if last else "filling replay"
            fps = progress.print(step, f"{loss_text} | last episodes: {play.scores()}")
            with writer.as_default(step=step * envs.FRAMES_PER_STEP):
                tf.summary.scalar("charts/frames_per_second_per_game", fps)
                if last:
                    tf.summary.scalar("losses/policy_regression", last["policy_loss"])
                    tf.summary.scalar("losses/feature_regression", last["feature_loss"])
                    tf.summary.scalar("train/agreement", last["agreement"])
        if runtime.crossed(before, step, config.eval_period) and step < config.steps_per_game:
            record = run_evaluation()
            print(f"[{label}] eval at frame {step * 4:,} per game:\n{table(rows_of(record))}",
                  flush=True)
        run.save_if_due(before, config.checkpoint_period,
                        play.new_episodes if config.deterministic else None)

    try:
        with runtime.StopSignal() as stop:
            synced_at = int(learner.updates.numpy())
            while run.step < config.steps_per_game and not stop.requested:
                if config.num_actors:  # actors play while this process learns
                    added = play.collect()
                    learn(added)
                    updates = int(learner.updates.numpy())
                    if updates - synced_at >= config.actor_sync_period:
                        play.set_weights(amn.get_weights())
                        synced_at = updates
                    advance(added)
                    continue
                if config.actor == "student":
                    greedy_all = acting_policy(np.concatenate(play.observations), game_of_env).reshape(
                        len(games), num_envs)
                else:
                    greedy_all = [loaded_by_game[g].act(obs, g) for g, obs in zip(games, play.observations)]
                all_actions = []
                for index, env in enumerate(play.envs):
                    explore = rng.random(num_envs) < config.epsilon
                    random_actions = envs.random_legal_actions(rng, env.legal_actions, num_envs)
                    all_actions.append(np.where(explore, random_actions, greedy_all[index]))
                play.send(all_actions)  # emulators step in C++ threads while the learner updates
                learn(num_envs)
                play.recv()
                advance(num_envs)
    finally:
        play.close()
        if config.num_actors:
            ray.shutdown()
    profiler.finish()
    if stop.requested:
        run.save()
        print(run.stop_message())
        return {"stopped": True}
    step = run.step
    rows = rows_of(run.final_record(run_evaluation))
    name = config.name or os.path.basename(os.path.normpath(run_dir))
    provenance = {"frames_trained_per_game": step * envs.FRAMES_PER_STEP, "agent_steps_per_game": step,
                  "experts": {g: reference[g]["path"] for g in games}, "table": rows,
                  "network": config.network, "tau": config.tau, "beta": config.beta,
                  "tau_target_top_probability": config.tau_target_top_probability
                  if config.tau == "auto" else None,
                  "run_dir": os.path.abspath(run_dir)}
    path = run.export_once(os.path.join(config.export_dir, "amn", name), lambda path: export.export_multitask(
        amn, games, path, provenance, protocol, kind="amn", temperatures=taus))
    summary = {"export": path, "table": rows, "run_dir": run_dir}
    run.save(finished=True, summary=summary)
    print(f"[{label}] final evaluation at frame {step * 4:,} per game "
          f"(epsilon {config.evaluation.epsilon}, {config.evaluation.episodes} episodes):")
    print(table(rows))
    print(f"[{label}] AMN SavedModel: {path}\n[{label}] TensorBoard: tensorboard --logdir "
          f"{os.path.join(run_dir, 'tensorboard')}", flush=True)
    return summary
