"""AMN learner throughput: the multitask step against the bare AMN step, in one run.

For G games (batch_per_game states each) and each network size, prints:
  * bare AMN step: policy + feature regression update on a fixed in-memory batch with
    expert targets precomputed (the floor of what an update costs);
  * learner step on an in-memory batch: every expert SavedModel run in-graph on its slice,
    then the same update (what an update costs when no input pipeline is involved);
  * full AMN learner step: the same, but its batch sampled per game from G replay memories
    through tf.data;
  * the multitask overhead (full vs bare), the pipeline's share (full as a fraction of the
    in-memory learner step; target >= 90%: tf.data never what waits) and replay per game.

Experts are real SavedModels (fresh Nature DQNs exported for real games) so expert
inference costs what it costs in training.

Usage: python benchmarks/bench_amn.py [--games_counts=4,8] [--networks=small,large]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_list("games_counts", ["4", "8"], "Numbers of games to measure.")
flags.DEFINE_list("networks", ["small", "large"], "AMN sizes to measure.")
flags.DEFINE_float("seconds", 15.0, "Seconds per measurement (at least 3 updates).")
flags.DEFINE_integer("per_game", 8, "States per game per update.")
flags.DEFINE_string("bench_precision", "auto", "auto | float32 | mixed_bfloat16")
FLAGS = flags.FLAGS

GAMES = ["Pong", "Boxing", "Seaquest", "SpaceInvaders", "Atlantis", "CrazyClimber", "Enduro",
         "Assault", "BeamRider", "DemonAttack", "FishingDerby", "Kangaroo", "NameThisGame"]


def make_experts(root, games):
    import keras

    from amn_tf import envs, export, networks

    paths = []
    for game in games:
        path = os.path.join(root, game, "1")
        export.export_expert(networks.nature_dqn(len(envs.legal_actions(game))), game, path, {}, "paper")
        paths.append(path)
    keras.backend.clear_session()
    return paths


def random_memory(capacity=4_000, seed=0):
    from amn_tf import replay

    rng = np.random.default_rng(seed)
    memory = replay.ReplayMemory(capacity, 1, seed=seed)
    memory.start_episodes([0], rng.integers(0, 255, (1, 84, 84, 4), dtype=np.uint8))
    frames = rng.integers(0, 255, (1, 84, 84, 4), dtype=np.uint8)
    for _ in range(capacity - 8):
        memory.append([0], [0], [0.0], [False], [False], [False], frames)
    return memory


def rate(fn, seconds, minimum=3):
    count, start = 0, time.time()
    while time.time() - start < seconds or count < minimum:
        fn()
        count += 1
    return count / (time.time() - start)


def measure(paths, network, per_game, seconds):
    import keras
    import tensorflow as tf

    from amn_tf import actor_mimic, envs, export, networks, replay

    loaded = [export.LoadedPolicy(p) for p in paths]
    games = [lp.games[0] for lp in loaded]
    masks = np.stack([envs.legal_mask(g) for g in games])
    amn = networks.build_network(network, 18, "amn")
    regressors = networks.feature_regressors(networks.feature_size(amn), [512] * len(games))
    memories = [random_memory(seed=i) for i in range(len(games))]
    dataset = replay.multitask_state_dataset(memories, per_game)
    learner = actor_mimic.AmnLearner(amn, regressors, [actor_mimic.expert_callable(lp) for lp in loaded],
                                     masks, keras.optimizers.Adam(2.5e-4), dataset)
    states, game_index = next(iter(replay.multitask_state_dataset(memories, per_game, prefetch=0)))
    expert_q, expert_features = learner.expert_targets(states)

    @tf.function
    def bare_step():
        with tf.GradientTape() as tape:
            policy_loss, feature_loss, _ = learner.losses(states, game_index, expert_q, expert_features)
            loss = policy_loss + 0.01 * feature_loss
        gradients = tape.gradient(loss, learner.variables)
        learner.optimizer.apply_gradients(zip(gradients, learner.variables))
        return loss

    in_memory_step = tf.function(lambda: learner._step.run((states, game_index)))

    for _ in range(2):
        bare_step()
        in_memory_step()
        learner.step()
    bare = rate(lambda: float(bare_step()), seconds)
    in_memory = rate(lambda: float(in_memory_step()["loss"]), seconds)
    full = rate(lambda: float(learner.step()["loss"]), seconds)
    keras.backend.clear_session()
    return bare, in_memory, full, memories[0].nbytes() / memories[0].capacity


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from amn_tf import runtime

    precision = runtime.set_precision(FLAGS.bench_precision)
    print(f"# bench_amn: {FLAGS.per_game} states per game, precision {precision}, "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}")
    print(f"{'games':>5} {'network':>7} {'bare upd/s':>11} {'in-memory':>10} {'full upd/s':>11} "
          f"{'overhead':>9} {'pipeline':>9} {'replay B/transition':>20} {'100k/game':>10}")
    with tempfile.TemporaryDirectory() as root:
        counts = [int(c) for c in FLAGS.games_counts]
        paths = make_experts(root, GAMES[: max(counts)])
        for count in counts:
            for network in FLAGS.networks:
                bare, in_memory, full, per_transition = measure(paths[:count], network,
                                                                FLAGS.per_game, FLAGS.seconds)
                print(f"{count:>5} {network:>7} {bare:>11.2f} {in_memory:>10.2f} {full:>11.2f} "
                      f"{100 * (bare / full - 1):>8.0f}% {100 * full / in_memory:>8.0f}% "
                      f"{per_transition:>20,.0f} "
                      f"{per_transition * 1e5 / 2**20:>8.0f}MiB", flush=True)


if __name__ == "__main__":
    sys.exit(app.run(main))
