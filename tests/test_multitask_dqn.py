"""Multitask DQN baselines (MDQN, MCDQN): per-game heads, TD targets, a run through main
(slow: a subprocess), refused commands (main in-process)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import main_in_process

from amn_tf import envs, export, multitask_dqn, networks, replay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GAMES = ["Pong", "Breakout"]  # 6 and 4 legal actions


def make_learner(kind, batch_per_game=3):
    keras.mixed_precision.set_global_policy("float32")
    legal = [envs.legal_actions(g) for g in GAMES]
    torso, heads = networks.multitask_dqn(kind, [len(a) for a in legal])
    target_torso, target_heads = multitask_dqn._clone(torso), [multitask_dqn._clone(h) for h in heads]
    memory = replay.ReplayMemory(64, 1)
    dataset = replay.transition_dataset(memory, 2, 0.99, True, prefetch=0)  # unused: batches given
    return multitask_dqn.MultitaskDqnLearner(torso, heads, target_torso, target_heads,
                                             keras.optimizers.Adam(), dataset, legal, batch_per_game)


def random_batch(rng, size, actions):
    return {
        "s_tm1": tf.constant(rng.integers(0, 255, (size, 84, 84, 4), dtype=np.uint8)),
        "a_tm1": tf.constant(actions, tf.int32),
        "r_t": tf.constant(rng.normal(size=size).astype(np.float32)),
        "discount_t": tf.constant(np.full(size, 0.99, np.float32)),
        "s_t": tf.constant(rng.integers(0, 255, (size, 84, 84, 4), dtype=np.uint8)),
    }


@pytest.mark.parametrize("kind", ["mdqn", "mcdqn"])
def test_each_head_gets_gradient_only_from_its_games_samples(kind):
    learner = make_learner(kind)
    rng = np.random.default_rng(0)
    actions = [0, 11, 12, 0, 1, 4]  # Pong ids for game 0, Breakout ids for game 1
    batch = random_batch(rng, 6, actions)

    def head_gradients(batch):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(learner.td_errors(batch)))
        variables = [learner.heads[0].trainable_variables, learner.heads[1].trainable_variables]
        return [[g.numpy() for g in grads] for grads in tape.gradient(loss, variables)]

    before = head_gradients(batch)
    changed = dict(batch)  # new states and rewards for game 0's samples only
    other = random_batch(np.random.default_rng(1), 6, actions)
    for key in ("s_tm1", "s_t", "r_t"):
        changed[key] = tf.concat([other[key][:3], batch[key][3:]], 0)
    after = head_gradients(changed)
    for mine, theirs in zip(after[1], before[1]):  # game 1's head: unchanged
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(a, b) for a, b in zip(after[0], before[0]))  # game 0's: changed
    assert all(np.abs(g).sum() > 0 for g in before[1])


def test_td_target_uses_each_games_head_and_legal_set():
    """Zero output kernels make Q_i(s, a) = bias_i[a]. Pong head biases 0..5, Breakout head
    biases 10, 20, 30, 40; r = 0, discount 0.99.
      Pong,    a = ALE 12 (output 5): error = 0.99 * 5 - 5 = -0.05
      Pong,    a = ALE 0  (output 0): error = 0.99 * 5 - 0 = 4.95
      Breakout, a = ALE 3 (output 2): error = 0.99 * 40 - 30 = 9.6
      Breakout, a = ALE 1 (output 1): error = 0.99 * 40 - 20 = 19.6"""
    learner = make_learner("mdqn", batch_per_game=2)
    for head, target_head, bias in zip(learner.heads, learner.target_heads,
                                       [np.arange(6.0), np.array([10.0, 20.0, 30.0, 40.0])]):
        layer = next(lay for lay in head.layers if lay.name.startswith("outputs_"))
        kernel, _ = layer.get_weights()
        layer.set_weights([np.zeros_like(kernel), bias.astype(np.float32)])
        target_head.set_weights(head.get_weights())
    rng = np.random.default_rng(0)
    batch = random_batch(rng, 4, [12, 0, 3, 1])
    batch["r_t"] = tf.zeros(4)
    errors = learner.td_errors(batch).numpy()
    np.testing.assert_allclose(errors, [-0.05, 4.95, 9.6, 19.6], rtol=1e-5, atol=1e-5)


def test_head_policies_pick_each_games_best_legal_action_in_one_trace():
    """Zero output kernels make Q_i(s, a) = bias_i[a]: the Pong head's biases peak at output 4
    (ALE 11 in Pong's legal set [0, 1, 3, 4, 11, 12]), the Breakout head's at output 1 (ALE 1 in
    [0, 1, 3, 4]). Both games' policies run through one traced function."""
    from amn_tf import policies

    learner = make_learner("mdqn")
    for head, bias in zip(learner.heads, [[0, 1, 2, 3, 9, 5], [0, 7, 2, 3]]):
        layer = next(lay for lay in head.layers if lay.name.startswith("outputs_"))
        kernel, _ = layer.get_weights()
        layer.set_weights([np.zeros_like(kernel), np.asarray(bias, np.float32)])
    heads = policies.HeadPolicies(learner.torso, learner.heads, [envs.legal_actions(g) for g in GAMES])
    frames = np.random.default_rng(0).integers(0, 255, (3, 84, 84, 4), dtype=np.uint8)
    assert envs.legal_actions("Pong")[4] == 11 and envs.legal_actions("Breakout")[1] == 1
    np.testing.assert_array_equal(heads.per_game[0](frames), [11, 11, 11])
    np.testing.assert_array_equal(heads.per_game[1](frames), [1, 1, 1])
    np.testing.assert_array_equal(heads.per_game[0](frames[:1]), [11])
    assert heads._greedy.experimental_get_tracing_count() == 1


def run_main(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "amn_tf.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mdqn", "mcdqn"])
def test_tiny_multitask_run_exports_and_reloads(tmp_path, kind):
    run_dir, export_dir = tmp_path / "run", tmp_path / "export"
    result = run_main("--flagfile=flags/smoke.flags", "--mode=multitask_dqn", f"--games={','.join(GAMES)}",
                      f"--multitask_network={kind}", "--batch_per_game=4", "--training_steps=400",
                      "--learning_starts=100", f"--run_dir={run_dir}", f"--export_dir={export_dir}",
                      "--amn_name=tiny")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final test play" in result.stdout
    path = export_dir / "multitask_dqn" / "tiny" / "1"
    loaded = export.LoadedPolicy(str(path))
    assert loaded.kind == "multitask_dqn" and loaded.games == GAMES
    # The SavedModel equals the checkpointed torso and heads, for each game id.
    keras.mixed_precision.set_global_policy("float32")
    torso, heads = networks.multitask_dqn(kind, [6, 4])
    newest = sorted((run_dir / "checkpoints").iterdir())[-1]
    tf.train.Checkpoint(torso=torso, head_0=heads[0], head_1=heads[1]).read(
        str(newest / "weights")).expect_partial()
    frames = np.random.default_rng(2).integers(0, 255, (3, 84, 84, 4), dtype=np.uint8)
    for game_id, game in enumerate(GAMES):
        out = loaded.signature(frames=tf.constant(frames), game_id=tf.fill([3], game_id))
        q_values = heads[game_id](torso(frames))[0].numpy()
        legal = envs.legal_actions(game)
        np.testing.assert_allclose(out["logits"].numpy()[:, legal], q_values, rtol=1e-5, atol=1e-5)
        assert np.all(np.delete(out["logits"].numpy(), legal, axis=1) == -1e9)
        assert set(out["action"].numpy()) <= set(legal.tolist())
    evaluated = run_main("--mode=eval", f"--saved_model={path}", "--game=Breakout",
                         "--eval_episodes=1", "--eval_max_steps=30", "--eval_envs=1")
    assert evaluated.returncode == 0 and "Breakout: mean" in evaluated.stdout


def test_multitask_needs_two_games(tmp_path):
    result = main_in_process("--mode=multitask_dqn", "--games=Pong", f"--run_dir={tmp_path / 'r'}")
    assert result.returncode != 0 and "at least two games" in result.stderr
    assert "Traceback" not in result.stderr


def _unshipped_game():
    """A game with no shipped expert, so that the default --experts lacks one of the run's games
    whatever saved_models/experts holds (Pong and Breakout are shipped now)."""
    shipped = set(os.listdir(os.path.join(ROOT, "saved_models", "experts")))
    return next(g for g in ("Freeway", "Bowling", "Tennis", "Asteroids") if g not in shipped)


@pytest.mark.slow
def test_report_puts_baselines_beside_the_experts(tmp_path):
    keras.mixed_precision.set_global_policy("float32")
    games = ["Pong", _unshipped_game()]
    for game in games:
        export.export_expert(networks.nature_dqn(len(envs.legal_actions(game))), game,
                             str(tmp_path / "experts" / game / "1"), {}, "paper")
    runs = []
    for kind in ("mdqn", "mcdqn"):
        run_dir = tmp_path / kind
        command = ["--flagfile=flags/smoke.flags", "--mode=multitask_dqn",
                   f"--games={','.join(games)}", f"--multitask_network={kind}",
                   "--batch_per_game=4", "--training_steps=300", "--learning_starts=100",
                   f"--run_dir={run_dir}", f"--export_dir={tmp_path / 'export'}"]
        if kind == "mdqn":  # trained before its experts existed (the shipped MDQN's history):
            result = run_main(*command)  # the shipped experts lack one of its games
            assert result.returncode == 0, result.stderr[-2000:]
            assert "no % of expert column" in result.stdout
            assert not (run_dir / "experts.json").exists()
        result = run_main(*command, f"--experts={tmp_path / 'experts'}")
        assert result.returncode == 0, result.stderr[-2000:]
        if kind == "mdqn":  # rerunning the finished run measures the experts, trains nothing
            assert "run already finished" in result.stdout and "final test play" not in result.stdout
            assert (run_dir / "experts.json").exists()
        else:
            assert "of expert)" in result.stdout  # "- of expert" here: these experts score 0
        # Only the experts' scores: the held-out states an AMN is measured on are not collected.
        assert not (run_dir / "held_out.npz").exists()
        runs.append(str(run_dir))
    report = run_main("--mode=report", f"--report_runs={','.join(runs)}",
                      f"--report_dir={tmp_path / 'docs'}")
    assert report.returncode == 0, report.stderr[-2000:]
    table = (tmp_path / "docs" / "table1.md").read_text()
    assert "| game | expert | MDQN mdqn (0.0012M) | MCDQN mcdqn (0.0012M) |" in table  # 300 steps
    assert "| Pong |" in table and f"| {games[1]} |" in table


def test_explicit_experts_missing_a_game_is_refused_before_writing(tmp_path):
    keras.mixed_precision.set_global_policy("float32")
    export.export_expert(networks.nature_dqn(6), "Pong", str(tmp_path / "experts" / "Pong" / "1"),
                         {}, "paper")
    result = main_in_process("--flagfile=flags/smoke.flags", "--mode=multitask_dqn", "--games=Pong,Breakout",
                             f"--experts={tmp_path / 'experts'}", f"--run_dir={tmp_path / 'run'}")
    assert result.returncode != 0 and "no expert for Breakout" in result.stderr
    assert not (tmp_path / "run").exists()
