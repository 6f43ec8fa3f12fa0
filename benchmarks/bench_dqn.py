"""DQN throughput against its references, measured in one run.

Prints:
  1. bare AtariVectorEnv frames/s with random actions (the emulator bound);
  2. the learner step alone on a fixed in-memory batch (updates/s), and through the
     replay's tf.data pipeline (the pipeline must not be what waits);
  3. the full DQN loop (acting with batched inference + one update of batch 32 per
     4 agent steps) in frames/s, and as a fraction of the bound the two set:
     bound = 1 / (1/env_fps + 1/(updates_per_s * 4 steps * 4 frames));
  4. replay bytes per stored transition.

Usage: python benchmarks/bench_dqn.py [--bench_game=Pong] [--seconds=20] [--bench_precision=auto]
       [--bench_n_step=1] [--bench_dueling]
  --bench_dueling adds the learner step with a dueling head (--dueling) on the same batch,
  beside the plain one.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("bench_game", "Pong", "Game to benchmark.")
flags.DEFINE_float("seconds", 20.0, "Seconds per measurement.")
flags.DEFINE_string("bench_precision", "auto", "auto | float32 | mixed_bfloat16")
flags.DEFINE_integer("bench_envs", 4, "Parallel environments.")
flags.DEFINE_boolean("bench_jit", False, "XLA-compile the learner step.")
flags.DEFINE_integer("bench_n_step", 1, "n-step returns of the replay pipeline and the loop.")
flags.DEFINE_boolean("bench_dueling", False, "Also time the learner step with a dueling head.")
FLAGS = flags.FLAGS


def bare_env_fps(game, num_envs, seconds):
    from amn_tf import envs

    env = envs.make_env(game, num_envs, "paper", 0)
    env.reset()
    rng = np.random.default_rng(0)
    steps, start = 0, time.time()
    while time.time() - start < seconds:
        env.step(envs.random_legal_actions(rng, env.legal_actions, num_envs))
        steps += num_envs
    elapsed = time.time() - start
    env.close()
    return steps * envs.FRAMES_PER_STEP / elapsed


def filled_memory(game, capacity, num_envs):
    from amn_tf import envs, replay

    memory = replay.ReplayMemory(capacity, num_envs)
    env = envs.make_env(game, num_envs, "paper", 1)
    obs = env.reset()
    memory.start_episodes(np.arange(num_envs), obs)
    rng = np.random.default_rng(1)
    streams = np.arange(num_envs)
    for _ in range(capacity // num_envs // 2):
        actions = envs.random_legal_actions(rng, env.legal_actions, num_envs)
        result = env.step(actions)
        memory.append(streams, actions, result.reward, result.terminated, result.truncated,
                      result.life_lost, result.final_obs)
        ended = result.terminated | result.truncated
        if ended.any():
            memory.start_episodes(streams[ended], result.obs[ended])
    env.close()
    return memory


def learner_rates(game, memory, seconds, jit, dueling=False):
    import keras
    import tensorflow as tf

    from amn_tf import dqn_agent, envs, networks, optimizers, policies, replay

    legal = envs.legal_actions(game)
    online = networks.nature_dqn(len(legal), dueling=dueling)
    target = keras.models.clone_model(online)
    _, mask, a2o = policies.action_tables(legal, len(legal))
    dataset = replay.transition_dataset(memory, 32, 0.99, True, n_step=FLAGS.bench_n_step,
                                        reward_clip=1.0)
    learner = dqn_agent.DqnLearner(online, target, optimizers.make_optimizer("adam", 1e-4), dataset, a2o, mask,
                             jit_compile=jit)
    batch = {k: tf.constant(v) for k, v in memory.sample(32, n_step=FLAGS.bench_n_step).items()}
    for _ in range(10):
        learner._update(batch)
        learner.step()

    def rate(fn):
        count, start = 0, time.time()
        while time.time() - start < seconds:
            fn()
            count += 1
        return count / (time.time() - start)

    bare = rate(lambda: float(learner._update(batch)["td_loss"]))
    piped = rate(learner.step)
    return bare, piped


def full_loop_fps(game, num_envs, seconds, precision, learner_rate):
    """Runs the real ``--mode=dqn`` command and reads its frames/s after learning starts."""
    from loop_fps import command_fps

    steps = int(seconds * learner_rate * 4 * 1.2) + 4_000
    return command_fps([
        "--mode=dqn", f"--game={game}", f"--num_envs={num_envs}",
        f"--training_steps={steps}", "--learning_starts=2000", "--replay_capacity=50000",
        "--batch_size=32", "--update_period=4", f"--log_period={max(400, steps // 10)}",
        "--eval_period=100000000", "--checkpoint_period=100000000", "--eval_episodes=1",
        "--eval_max_steps=10", "--eval_envs=1", f"--precision={precision}",
        f"--jit_compile={FLAGS.bench_jit}", f"--n_step={FLAGS.bench_n_step}",
    ], skip=2)  # fmt: skip


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    from amn_tf import envs, runtime

    precision = runtime.set_precision(FLAGS.bench_precision)
    game, seconds = envs.canonical_game(FLAGS.bench_game), FLAGS.seconds
    print(f"# bench_dqn: {game}, {FLAGS.bench_envs} envs, n_step {FLAGS.bench_n_step}, precision {precision}, "
          f"jit {FLAGS.bench_jit}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}")
    env_fps = bare_env_fps(game, FLAGS.bench_envs, seconds)
    print(f"bare AtariVectorEnv, random actions : {env_fps:10,.0f} frames/s")
    memory = filled_memory(game, 20_000, FLAGS.bench_envs)
    bare, piped = learner_rates(game, memory, seconds, FLAGS.bench_jit)
    print(f"learner step, fixed batch (bare)     : {bare:10,.1f} updates/s")
    print(f"learner step, replay tf.data pipeline: {piped:10,.1f} updates/s ({100 * piped / bare:.0f}% of bare)")
    if FLAGS.bench_dueling:
        dueling, _ = learner_rates(game, memory, seconds, FLAGS.bench_jit, dueling=True)
        print(f"learner step, dueling head (bare)    : {dueling:10,.1f} updates/s ({100 * dueling / bare:.0f}% of plain)")
    bound = 1.0 / (1.0 / env_fps + 1.0 / (bare * 16))
    loop = full_loop_fps(game, FLAGS.bench_envs, seconds, FLAGS.bench_precision, bare)
    print(f"full DQN loop (1 update/4 steps)     : {loop:10,.0f} frames/s = {loop / 4:,.0f} agent steps/s")
    print(f"bound set by env and learner         : {bound:10,.0f} frames/s; loop at {100 * loop / bound:.0f}% of it")
    per_transition = memory.nbytes() / memory.capacity
    big = per_transition * 1_000_000
    print(f"replay bytes per transition          : {per_transition:10,.0f} B "
          f"(1M transitions = {big / 2**30:.2f} GiB; whole stacks twice would be 56,448 B)")


if __name__ == "__main__":
    sys.exit(app.run(main))
