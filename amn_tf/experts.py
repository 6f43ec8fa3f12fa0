"""The experts an AMN learns from: which SavedModels teach which game (``find_experts``),
what they say of themselves and whether they beat random play, their outputs stored with
each state the AMN's replay receives (``ExpertOutputs``), their reference scores and
held-out states measured once per run directory (``measure_experts``).
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from amn_tf import checkpoints, envs, evaluation, export, rundirs, seeds
from amn_tf.config import ConfigError

HELD_OUT_STATES = 256  # per game, for the action-agreement figure and --tau=auto (--held_out_states)


def _newest_version(directory: str) -> str | None:
    versions = [n for n in os.listdir(directory) if n.isdigit()
                and os.path.exists(os.path.join(directory, n, "saved_model.pb"))]
    return os.path.join(directory, max(versions, key=int)) if versions else None


def _expert_game_on_disk(path: str) -> str | None:
    """The game an expert SavedModel's ``assets/amn_tf.json`` names (read without TensorFlow), or
    None when the file is missing, unreadable or not an expert's: then the SavedModel is loaded."""
    try:
        with open(os.path.join(path, "assets", export.METADATA_FILE)) as handle:
            metadata = json.load(handle)
        return metadata["games"][0] if metadata.get("kind") == "expert" else None
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def find_experts(paths, games=None) -> list:
    """Resolves ``--experts`` into ``[(game, SavedModel path)]`` in a stable order.

    Each path is a SavedModel version directory, a ``<Game>/`` directory of versions (the
    newest is taken) or a directory of such game directories.
    """
    found = []
    for path in paths:
        missing = export.missing_directory(path)
        if missing:
            raise ConfigError(f"expert path {path} {missing} (pass a <Game>/<version>/ SavedModel "
                              "directory, a <Game>/ directory of versions or a directory of those)")
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            candidates = [path]
        elif _newest_version(path):
            candidates = [_newest_version(path)]
        else:
            candidates = [v for v in (_newest_version(os.path.join(path, d))
                                      for d in sorted(os.listdir(path))
                                      if os.path.isdir(os.path.join(path, d))) if v]
        if not candidates:
            raise ConfigError(
                f"no expert SavedModels found in {path} (expected <Game>/<version>/saved_model.pb); "
                "train one with --mode=dqn or pass --experts=PATH")
        found.extend(candidates)
    experts, names = [], []
    for path in found:
        game = _expert_game_on_disk(path)
        if games and game is not None and game not in games:
            names.append(game)  # not asked for: its file names its game, no need to load it
            continue
        loaded = export.LoadedPolicy(path)
        if loaded.kind != "expert":
            raise ConfigError(f"{path} is a {loaded.kind} SavedModel, not an expert")
        experts.append((loaded.games[0], loaded))
        names.append(loaded.games[0])
    twice = sorted({g for g in names if names.count(g) > 1})
    if twice:
        raise ConfigError(f"more than one expert for {', '.join(twice)}: pass one "
                                     "SavedModel per game in --experts")
    if games:
        missing = [g for g in games if g not in names]
        if missing:
            raise ConfigError(f"no expert for {', '.join(missing)} among "
                                         f"{', '.join(names)}; add one to --experts")
        experts = [(g, dict(experts)[g]) for g in games]
    protocols = {loaded.protocol for _, loaded in experts}
    if len(protocols) > 1:
        raise ConfigError(f"experts were trained under different protocols {sorted(protocols)}")
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
        run = provenance.get("run_dir")
        print(f"[{label}] expert {game}: {loaded.path} ({trained}, {scored}, trained in "
              f"{'run ' + rundirs.portable_path(run) if run else 'an unknown run'})", flush=True)


def warn_weak_experts(reference, label) -> None:
    """Warns about experts whose measured mean is not above random play's."""
    weak = [game for game, row in reference.items()
            if "random_mean" in row and row["mean"] <= row["random_mean"]]
    for game in weak:
        row = reference[game]
        print(f"[{label}] WARNING: expert {game} ({row['path']}) plays no better than random "
              f"({row['mean']:.1f} vs random {row['random_mean']:.1f} over {row['episodes']} "
              "episodes): the AMN would learn nothing useful from it; retrain it or leave it out "
              "with --games", flush=True)


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


def expert_callable(loaded: export.LoadedPolicy):
    signature = loaded.signature

    def call(frames):
        out = signature(frames=frames)
        return out["q_values"], out["features"]

    return call


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


def stored_test_play(loaded, game, protocol, test_play, label) -> dict | None:
    """The test play stored in the expert's SavedModel (``--mode=eval --store_test_play``)
    if it was played under this run's protocol, epsilon and episode cap with at least as many
    episodes; None (with the reason printed) if the expert must be played instead."""
    try:
        stored = export.read_test_play(loaded.path)
    except export.SavedModelError as error:
        print(f"[{label}] WARNING: {error}; playing the expert instead", flush=True)
        return None
    if stored is None:
        return None
    wanted = {"game": game, "protocol": protocol, "epsilon": test_play.epsilon,
              "max_steps": test_play.max_steps}
    differ = [f"{k} {stored[k]} (this run: {v})" for k, v in wanted.items() if stored[k] != v]
    if stored["expert"].get("episodes", 0) < test_play.episodes:
        differ.append(f"{stored['expert'].get('episodes')} episodes (this run: {test_play.episodes})")
    if differ:
        print(f"[{label}] expert {game}: its stored test play differs in {', '.join(differ)}; "
              "playing it", flush=True)
        return None
    return stored


def _measure(loaded, game, index, protocol, test_play, seed, backend, label, remeasure,
             held_out_states) -> tuple:
    """(reference row, held-out states or None when ``held_out_states`` is 0) of game ``index``'s
    expert: from its stored test play when that matches the run's (unless ``remeasure``), else
    played here."""
    held_out = collect_held_out(loaded, game, protocol, held_out_states, seeds.held_out(seed, index),
                                backend) if held_out_states else None
    stored = None if remeasure else stored_test_play(loaded, game, protocol, test_play, label)
    if stored is not None:
        result = evaluation.EvalResult.from_dict(stored["expert"])
        random_mean = float(stored["random"]["mean"])
        row = {"path": loaded.path, **result.as_dict(), "random_mean": random_mean,
               "stored_test_play": os.path.join(loaded.path, export.TEST_PLAY_FILE)}
        return row, held_out, (f"expert {result.line()} | random play {random_mean:.1f} "
                               f"(stored test play: {row['stored_test_play']})")
    result = evaluation.play(evaluation.saved_model_policy(loaded, game), game, protocol,
                             test_play.episodes, test_play.epsilon, test_play.num_envs,
                             test_play.max_steps, seeds.expert_play(seed, index), backend,
                             progress=evaluation.PlayProgress(f"[{label}] expert {game}"))
    random_play = evaluation.play(None, game, protocol, test_play.episodes, 1.0, test_play.num_envs,
                                  test_play.max_steps, seeds.random_play(seed, index), backend,
                                  progress=evaluation.PlayProgress(f"[{label}] random play of {game}"))
    row = {"path": loaded.path, **result.as_dict(), "random_mean": random_play.mean}
    return row, held_out, f"expert {result.line()} | random play {random_play.mean:.1f}"


def measure_experts(run_dir, games, loaded_by_game, protocol, test_play, seed, backend, label,
                    remeasure=False, held_out_states=HELD_OUT_STATES) -> tuple:
    """Expert scores under the run's protocol (``test_play``: a ``config.EvalConfig``), random
    play beside them and ``held_out_states`` held-out expert states per game (0: none, an empty
    dict returned, for a run that only needs the scores), measured once per run directory
    (``experts.json``, ``held_out.npz``) and read back on resume (a resumed run keeps the states
    it has); weak experts warned about. An expert's matching stored test play stands in for
    playing it unless ``remeasure``."""
    reference_path = os.path.join(run_dir, "experts.json")
    held_out_path = os.path.join(run_dir, "held_out.npz")
    if os.path.exists(reference_path) and (not held_out_states or os.path.exists(held_out_path)):
        with open(reference_path) as handle:
            reference = json.load(handle)
        held_out = {}
        if held_out_states:
            with np.load(held_out_path, allow_pickle=False) as data:
                held_out = {g: data[g] for g in games}
    else:
        reference, held_out = {}, {}
        for index, game in enumerate(games):
            reference[game], states, line = _measure(loaded_by_game[game], game, index, protocol, test_play,
                                                     seed, backend, label, remeasure, held_out_states)
            if held_out_states:
                held_out[game] = states
            print(f"[{label}] {line}", flush=True)
        if held_out_states:
            np.savez(held_out_path + ".tmp.npz", **held_out)
            os.replace(held_out_path + ".tmp.npz", held_out_path)
        checkpoints.write_json_atomically(reference_path, reference)
    warn_weak_experts(reference, label)
    return reference, held_out
