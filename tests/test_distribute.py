"""MirroredStrategy learners on a CPU split into two logical devices: one distributed step
equals the single-device step on the same batch (DQN and AMN); a mirrored run through main.
All slow (each in a fresh process: the CPU must be split before TensorFlow initialises) but
the batch split flag check (main in-process)."""

import os
import subprocess
import sys

import pytest
from conftest import assert_clean_error, main_in_process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh process: the CPU must be split before TensorFlow initialises.
SCRIPT = r'''
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
keras.mixed_precision.set_global_policy("float32")
from amn_tf import actor_mimic, dqn_agent, envs, learning, networks, policies

rng = np.random.default_rng(0)
strategy = learning.make_strategy("mirrored", 2)
assert strategy.num_replicas_in_sync == 2

# ---- DQN: batch of 8, split 4 + 4 across the replicas.
legal = envs.legal_actions("Breakout")
batch = {"s_tm1": rng.integers(0, 255, (8, 84, 84, 4), dtype=np.uint8),
         "a_tm1": rng.choice(legal, 8).astype(np.int32),
         "r_t": rng.normal(size=8).astype(np.float32),
         "discount_t": np.full(8, 0.99, np.float32),
         "s_t": rng.integers(0, 255, (8, 84, 84, 4), dtype=np.uint8)}
dataset = tf.data.Dataset.from_tensors(batch).repeat()
_, mask, a2o = policies.action_tables(legal, len(legal))
keras.utils.set_random_seed(1)
online = networks.nature_dqn(4); weights = online.get_weights()
target = keras.models.clone_model(online); target.set_weights(weights)
single = dqn_agent.DqnLearner(online, target, keras.optimizers.Adam(1e-3), dataset, a2o, mask)
loss_single = float(single.step()["td_loss"])
with strategy.scope():
    d_online = networks.nature_dqn(4); d_online.set_weights(weights)
    d_target = keras.models.clone_model(d_online); d_target.set_weights(weights)
    mirrored = dqn_agent.DqnLearner(d_online, d_target, keras.optimizers.Adam(1e-3), dataset, a2o, mask,
                              strategy=strategy)
loss_mirrored = float(mirrored.step()["td_loss"])
assert abs(loss_single - loss_mirrored) < 1e-5, (loss_single, loss_mirrored)
diff = max(float(np.abs(a - b).max()) for a, b in zip(online.get_weights(), d_online.get_weights()))
moved = max(float(np.abs(a - b).max()) for a, b in zip(online.get_weights(), weights))
assert diff < 1e-5 and moved > 1e-4, (diff, moved)
assert int(mirrored.updates.numpy()) == 1
print("dqn ok", loss_single, diff)

# ---- AMN: 2 games x 4 states; the mirrored batch is grouped per replica (2 + 2 per game).
games = ["Pong", "Breakout"]
masks = np.stack([envs.legal_mask(g) for g in games])
experts = []
for game in games:
    expert = networks.nature_dqn(len(envs.legal_actions(game)))
    experts.append(lambda frames, expert=expert: expert(frames))
states = {g: rng.integers(0, 255, (4, 84, 84, 4), dtype=np.uint8) for g in games}
plain = (np.concatenate([states[g] for g in games]), np.repeat(np.arange(2, dtype=np.int32), 4))
grouped = (np.concatenate([states[g][r * 2:(r + 1) * 2] for r in range(2) for g in games]),
           np.tile(np.repeat(np.arange(2, dtype=np.int32), 2), 2))
keras.utils.set_random_seed(2)
amn = networks.build_network("small", 18, "amn"); amn_weights = amn.get_weights()
heads = networks.feature_regressors(512, [512, 512]); head_weights = [h.get_weights() for h in heads]
one = actor_mimic.AmnLearner(amn, heads, experts, masks, keras.optimizers.Adam(1e-3),
                             tf.data.Dataset.from_tensors(plain).repeat())
loss_one = float(one.step()["loss"])
with strategy.scope():
    d_amn = networks.build_network("small", 18, "amn"); d_amn.set_weights(amn_weights)
    d_heads = networks.feature_regressors(512, [512, 512])
    for h, w in zip(d_heads, head_weights):
        h.set_weights(w)
    two = actor_mimic.AmnLearner(d_amn, d_heads, experts, masks, keras.optimizers.Adam(1e-3),
                                 tf.data.Dataset.from_tensors(grouped).repeat(), strategy=strategy)
loss_two = float(two.step()["loss"])
assert abs(loss_one - loss_two) < 1e-4, (loss_one, loss_two)
diff = max(float(np.abs(a - b).max()) for a, b in zip(amn.get_weights(), d_amn.get_weights()))
assert diff < 1e-5, diff
print("amn ok", loss_one, diff)
'''


@pytest.mark.slow
def test_one_mirrored_step_equals_the_single_device_step():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "dqn ok" in result.stdout and "amn ok" in result.stdout


def run_main(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "amn_tf.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_mirrored_dqn_run_through_main(tmp_path):
    result = run_main("--flagfile=flags/smoke.flags", "--distribution=mirrored", "--devices=2",
                      "--cpu_devices=2", f"--run_dir={tmp_path / 'run'}",
                      f"--export_dir={tmp_path / 'export'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SavedModel:" in result.stdout


@pytest.mark.slow
def test_more_devices_than_exist_is_one_line(tmp_path):
    result = run_main("--flagfile=flags/smoke.flags", "--distribution=mirrored", "--devices=4",
                      f"--run_dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert "asked for 4 devices" in result.stderr and "Traceback" not in result.stderr


def test_a_batch_that_does_not_split_over_the_devices_is_one_line(tmp_path):
    odd = main_in_process("--flagfile=flags/smoke.flags", "--distribution=mirrored", "--devices=3",
                          f"--run_dir={tmp_path / 'run'}")
    assert odd.returncode != 0 and "does not split evenly" in odd.stderr
    assert "does not split evenly" in assert_clean_error(odd)
