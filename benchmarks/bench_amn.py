"""AMN learner throughput: the bare AMN step, the old full learner step (experts run in the
step) and the new one (expert outputs stored at insertion, read from the batch), in one run.

For G games (batch_per_game states each) and each network size, prints updates/s of:
  * bare: policy + feature regression update on a fixed in-memory batch with expert
    targets precomputed (the floor of what an update costs);
  * old full: the batch sampled per game from G replay memories through tf.data, every
    expert SavedModel run in-graph on its slice of the batch, then the update;
  * new full: the same sampling, the batch carrying the expert outputs stored with each
    state when it was written (``experts.ExpertOutputs``); no expert runs in the step;
  * their overheads over bare (target: new <= 25%);
  * new + insert: the new step charged with what computing the outputs at insertion costs
    the acting loop per update (one ``ExpertOutputs`` call for a vector step of
    ``--bench_num_envs`` new states per game, ``--bench_update_period`` /
    ``--bench_num_envs`` of them per update), and its overhead;
  * replay bytes per transition per game before (frames only) and after (Q-values float32
    at 18 ALE ids + 512 features float16, beta > 0), and per 100k-transition game memory.

Experts are real SavedModels (fresh Nature DQNs exported for real games) so expert
inference costs what it costs in training.

Usage: python benchmarks/bench_amn.py [--games_counts=4,8] [--networks=small,large] [--seconds=8]
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
flags.DEFINE_integer("bench_num_envs", 4, "Envs per game of the acting loop (insertion cost).")
flags.DEFINE_integer("bench_update_period", 4, "Agent steps per game per update (insertion cost).")
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


def random_memory(expert_outputs, index, capacity=4_000, seed=0):
    """One game's memory of random frames; each state's expert outputs stored with it (one
    frame appended throughout: past the first entries every state is the same stack, whose
    outputs are computed once)."""
    from amn_tf import replay

    rng = np.random.default_rng(seed)
    memory = replay.ReplayMemory(capacity, 1, seed=seed, outputs=expert_outputs.memory_outputs(index))
    first = rng.integers(0, 255, (1, 84, 84, 4), dtype=np.uint8)
    frames = np.repeat(rng.integers(0, 255, (1, 84, 84, 1), dtype=np.uint8), 4, axis=-1)
    memory.start_episodes([0], first, expert_outputs.of_game(index, first))
    stored = expert_outputs.of_game(index, frames)
    for _ in range(capacity - 8):
        memory.append([0], [0], [0.0], [False], [False], [False], frames, stored)
    return memory


def rate(fn, seconds, minimum=3):
    count, start = 0, time.time()
    while time.time() - start < seconds or count < minimum:
        fn()
        count += 1
    return count / (time.time() - start)


def measure(paths, network, per_game, seconds, num_envs, update_period):
    import keras
    import tensorflow as tf

    from amn_tf import actor_mimic, envs, experts, export, networks, replay

    loaded = [export.LoadedPolicy(p) for p in paths]
    games = [lp.games[0] for lp in loaded]
    masks = np.stack([envs.legal_mask(g) for g in games])
    callables = [experts.expert_callable(lp) for lp in loaded]
    expert_outputs = experts.ExpertOutputs(callables, masks, [lp.feature_size for lp in loaded],
                                               features=True)  # beta > 0: features stored too
    memories = [random_memory(expert_outputs, i, seed=i) for i in range(len(games))]
    amn = networks.build_network(network, 18, "amn")
    regressors = networks.feature_regressors(networks.feature_size(amn), [512] * len(games))
    # Old: bare states, experts in the step. New: stored outputs in the batch, no experts.
    old = actor_mimic.AmnLearner(amn, regressors, callables, masks, keras.optimizers.Adam(2.5e-4),
                                 replay.multitask_state_dataset(memories, per_game, outputs=False))
    new = actor_mimic.AmnLearner(amn, regressors, None, masks, keras.optimizers.Adam(2.5e-4),
                                 replay.multitask_state_dataset(memories, per_game))
    states, game_index, expert_q, expert_features = next(iter(
        replay.multitask_state_dataset(memories, per_game, prefetch=0)))
    expert_features = tf.cast(expert_features, tf.float32)

    @tf.function
    def bare_step():
        with tf.GradientTape() as tape:
            policy_loss, feature_loss, _ = new.losses(states, game_index, expert_q, expert_features)
            loss = policy_loss + 0.01 * feature_loss
        gradients = tape.gradient(loss, new.variables)
        new.optimizer.apply_gradients(zip(gradients, new.variables))
        return loss

    rng = np.random.default_rng(0)
    new_states = [rng.integers(0, 255, (num_envs, 84, 84, 4), dtype=np.uint8) for _ in games]

    def insert():  # what the acting loop now does per vector step: all games, one call
        return expert_outputs(new_states)

    for _ in range(2):
        bare_step()
        old.step()
        new.step()
        insert()
    bare = rate(lambda: float(bare_step()), seconds)
    full_old = rate(lambda: float(old.step()["loss"]), seconds)
    full_new = rate(lambda: float(new.step()["loss"]), seconds)
    inserts = rate(insert, max(1.0, seconds / 3))
    with_insert = 1.0 / (1.0 / full_new + (update_period / num_envs) / inserts)
    before = 7_062  # frames, actions, rewards, flags (the DQN's memory, unchanged)
    after = memories[0].nbytes() / memories[0].capacity
    keras.backend.clear_session()
    return bare, full_old, full_new, with_insert, before, after


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from amn_tf import runtime

    precision = runtime.set_precision(FLAGS.bench_precision)
    print(f"# bench_amn: {FLAGS.per_game} states per game, precision {precision}, "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}; insertion: "
          f"{FLAGS.bench_num_envs} envs per game, update period {FLAGS.bench_update_period}")
    print(f"{'games':>5} {'network':>7} {'bare':>7} {'old full':>9} {'new full':>9} {'old ovh':>8} "
          f"{'new ovh':>8} {'new+insert':>11} {'ovh':>5} {'B/transition':>14} {'100k/game':>16}")
    with tempfile.TemporaryDirectory() as root:
        counts = [int(c) for c in FLAGS.games_counts]
        paths = make_experts(root, GAMES[: max(counts)])
        for count in counts:
            for network in FLAGS.networks:
                bare, full_old, full_new, with_insert, before, after = measure(
                    paths[:count], network, FLAGS.per_game, FLAGS.seconds, FLAGS.bench_num_envs,
                    FLAGS.bench_update_period)
                print(f"{count:>5} {network:>7} {bare:>7.2f} {full_old:>9.2f} {full_new:>9.2f} "
                      f"{100 * (bare / full_old - 1):>7.0f}% {100 * (bare / full_new - 1):>7.0f}% "
                      f"{with_insert:>11.2f} {100 * (bare / with_insert - 1):>4.0f}% "
                      f"{before:>6,.0f} -> {after:>5,.0f} "
                      f"{before * 1e5 / 2**20:>5.0f} -> {after * 1e5 / 2**20:>4.0f}MiB", flush=True)


if __name__ == "__main__":
    sys.exit(app.run(main))
