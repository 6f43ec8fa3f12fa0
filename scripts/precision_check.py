"""How far mixed bfloat16 (what --precision=auto picks on CPUs with bf16 instructions) moves a
DQN's numbers from float32, on a trained run's own weights and replay: Q-values and their
action gaps, greedy actions, and the TD-loss gradient of the same batches, beside the
reference of how far two batches' float32 gradients differ (the sampling noise every update
already carries).

    python scripts/precision_check.py RUN_DIR [--batches=20] [--batch_size=32]

RUN_DIR: a ``--mode=dqn`` run directory whose newest checkpoint holds its replay
(``--save_replay``). Both networks get the checkpoint's online weights (the target network
too, so the TD targets differ only by precision); the batches are sampled from the
checkpoint's replay as the learner samples them (its n-step and reward clip).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("batches", 20, "Batches compared.", lower_bound=1)
flags.DEFINE_integer("batch_size", 32, "States per batch.", lower_bound=1)


def _network(policy: str, legal: int, weights_path: str, dueling: bool):
    import keras
    import tensorflow as tf

    from amn_tf import networks

    keras.mixed_precision.set_global_policy(policy)
    model = networks.nature_dqn(legal, name="online", dueling=dueling)
    tf.train.Checkpoint(online=model).read(weights_path).expect_partial()
    keras.mixed_precision.set_global_policy("float32")
    return model


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: precision_check.py RUN_DIR")
    import tensorflow as tf

    from amn_tf import checkpoints, envs, losses, policies, replay

    run_dir = argv[1]
    with open(os.path.join(run_dir, "flags.json")) as handle:
        run = json.load(handle)
    found = checkpoints.complete_checkpoints(os.path.join(run_dir, "checkpoints"))
    if not found or not os.path.exists(os.path.join(found[0], "replay-0.npz")):
        sys.exit(f"precision_check: {run_dir} has no checkpoint holding its replay: train it with "
                 "--save_replay")
    newest = found[0]
    legal = envs.legal_actions(run["game"])
    memory = replay.ReplayMemory(run["replay_capacity"], run["num_envs"], seed=0)
    memory.restore(os.path.join(newest, "replay-0.npz"))
    weights = os.path.join(newest, "weights")
    nets = {p: _network(p, len(legal), weights, run.get("dueling", False))
            for p in ("float32", "mixed_bfloat16")}
    _, mask, action_to_output = policies.action_tables(legal, len(legal))
    mask = tf.constant(mask, tf.bool)
    life_loss = envs.get_protocol(run["protocol"]).life_loss_terminal
    q_err, gaps, flips, cosines, norms, loss_pairs = [], [], 0, [], [], []
    between, previous = [], None  # the reference: two batches' float32 gradients
    q_abs = []
    for _ in range(FLAGS.batches):
        batch = memory.sample(FLAGS.batch_size, run["gamma"], life_loss, run["n_step"], run["reward_clip"])
        results = {}
        for policy, net in nets.items():
            q_tm1 = net(batch["s_tm1"], training=False)[0]
            q_t = net(batch["s_t"], training=False)[0]
            a_tm1 = tf.gather(action_to_output, batch["a_tm1"])
            with tf.GradientTape() as tape:
                q = net(batch["s_tm1"], training=True)[0]
                loss = losses.td_loss(q, a_tm1, batch["r_t"], batch["discount_t"], q_t, q_t, mask)
            grads = tape.gradient(loss, net.trainable_variables)
            flat = tf.concat([tf.reshape(tf.cast(g, tf.float32), [-1]) for g in grads], 0)
            results[policy] = (q_tm1.numpy().astype(np.float64), flat.numpy().astype(np.float64), float(loss))
        q32, g32, l32 = results["float32"]
        q16, g16, l16 = results["mixed_bfloat16"]
        q_err.extend(np.abs(q16 - q32).max(axis=1))
        q_abs.append(float(np.abs(q32).mean()))
        top2 = np.sort(q32, axis=1)[:, -2:]
        gaps.extend(top2[:, 1] - top2[:, 0])
        flips += int(np.sum(q16.argmax(1) != q32.argmax(1)))
        cosines.append(float(g16 @ g32 / (np.linalg.norm(g16) * np.linalg.norm(g32))))
        norms.append(float(np.linalg.norm(g16 - g32) / np.linalg.norm(g32)))
        loss_pairs.append((l32, l16))
        if previous is not None:
            between.append((float(g32 @ previous / (np.linalg.norm(g32) * np.linalg.norm(previous))),
                            float(np.linalg.norm(g32 - previous) / np.linalg.norm(previous))))
        previous = g32
    states = FLAGS.batches * FLAGS.batch_size
    print(f"{run['game']} run {run_dir}, checkpoint {os.path.basename(newest)}, {states} replay states "
          f"({FLAGS.batches} batches of {FLAGS.batch_size}), n-step {run['n_step']}")
    print("| measure | value |\n| --- | ---: |")
    print(f"| mean abs Q (float32) | {np.mean(q_abs):.4f} |")
    print(f"| largest Q difference per state, median / max | {np.median(q_err):.5f} / {np.max(q_err):.5f} |")
    print(f"| float32 action gap (best minus second), median | {np.median(gaps):.5f} |")
    print(f"| states whose greedy action differs | {flips} of {states} ({flips / states:.1%}) |")
    print(f"| TD-loss gradient cosine, bf16 vs float32, mean / min | {np.mean(cosines):.4f} / {np.min(cosines):.4f} |")
    print(f"| relative gradient difference, mean | {np.mean(norms):.3f} |")
    print(f"| reference: float32 gradients of two successive batches, cosine mean / relative "
          f"difference mean | {np.mean([c for c, _ in between]):.4f} / {np.mean([d for _, d in between]):.3f} |")
    l32, l16 = np.mean(loss_pairs, axis=0)
    print(f"| TD loss, float32 / bf16 (means) | {l32:.6f} / {l16:.6f} |")


if __name__ == "__main__":
    app.run(main)
