"""Actor-side throughput: epsilon-greedy play with batched inference against the bare
emulator, measured in one run.

For each number of parallel environments N, prints the bare AtariVectorEnv frames/s with
random actions and the frames/s of the amn_tf actor (a Nature DQN picking the greedy
action for all N envs in one forward pass, epsilon 0.05), and their ratio; then the same
actor with the envs in two pipelined halves (one half steps while the other's actions are
chosen).

Usage: python benchmarks/bench_actor.py [--bench_game=Pong] [--env_counts=4,8,16,32]
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("bench_game", "Pong", "Game to play.")
flags.DEFINE_list("env_counts", ["4", "8", "16", "32"], "Numbers of parallel environments.")
flags.DEFINE_float("seconds", 10.0, "Seconds per measurement.")
flags.DEFINE_string("bench_precision", "auto", "auto | float32 | mixed_bfloat16")
FLAGS = flags.FLAGS


def play(game, num_envs, seconds, policy):
    from amn_tf import envs

    env = envs.make_env(game, num_envs, "paper", 0)
    rng = np.random.default_rng(0)
    obs = env.reset()
    steps, start = 0, time.time()
    while time.time() - start < seconds:
        random_actions = envs.random_legal_actions(rng, env.legal_actions, num_envs)
        if policy is None:
            actions = random_actions
        else:
            explore = rng.random(num_envs) < 0.05
            actions = np.where(explore, random_actions, policy(obs)).astype(np.int32)
        obs = env.step(actions).obs
        steps += num_envs
    elapsed = time.time() - start
    env.close()
    return steps * envs.FRAMES_PER_STEP / elapsed


def play_pipelined(game, num_envs, seconds, policy):
    """The same play with the envs in two halves: one half's emulators step (in their C++
    threads) while the policy chooses for the other half."""
    from amn_tf import envs

    halves = [envs.make_env(game, num_envs // 2, "paper", seed) for seed in (0, 1)]
    rng = np.random.default_rng(0)
    n = num_envs // 2

    def choose(env, obs):
        explore = rng.random(n) < 0.05
        random_actions = envs.random_legal_actions(rng, env.legal_actions, n)
        return np.where(explore, random_actions, policy(obs)).astype(np.int32)

    obs = [env.reset() for env in halves]
    halves[0].send(choose(halves[0], obs[0]))
    steps, start = 0, time.time()
    current = 1
    while time.time() - start < seconds:
        halves[current].send(choose(halves[current], obs[current]))  # the other half steps meanwhile
        other = 1 - current
        obs[other] = halves[other].recv().obs
        steps += n
        current = other
    elapsed = time.time() - start
    halves[1 - current].recv()  # the half still stepping
    for env in halves:
        env.close()
    return steps * envs.FRAMES_PER_STEP / elapsed


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from amn_tf import envs, networks, policies, runtime

    precision = runtime.set_precision(FLAGS.bench_precision)
    game = envs.canonical_game(FLAGS.bench_game)
    legal = envs.legal_actions(game)
    model = networks.nature_dqn(len(legal))
    output_actions, mask, _ = policies.action_tables(legal, len(legal))
    policy = policies.GreedyPolicy(model, output_actions, mask)
    policy(np.zeros((1, 84, 84, 4), np.uint8))
    print(f"# bench_actor: {game}, precision {precision}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{'envs':>5} {'bare env frames/s':>18} {'actor frames/s':>15} {'fraction':>9} "
          f"{'pipelined halves':>17} {'fraction':>9}")
    for count in (int(c) for c in FLAGS.env_counts):
        bare = play(game, count, FLAGS.seconds, None)
        acting = play(game, count, FLAGS.seconds, policy)
        piped = play_pipelined(game, count, FLAGS.seconds, policy)
        print(f"{count:>5} {bare:>18,.0f} {acting:>15,.0f} {100 * acting / bare:>8.0f}% "
              f"{piped:>17,.0f} {100 * piped / bare:>8.0f}%", flush=True)


if __name__ == "__main__":
    sys.exit(app.run(main))
