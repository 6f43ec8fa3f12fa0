"""Actor-Mimic: the learner on real expert SavedModels, a real multitask run through main
and the exported AMN (slow: main in a subprocess), bad inputs (main in-process), and the
paper's student-sampling argument on a synthetic MDP."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import main_in_process

from amn_tf import actor_mimic, actors, config, envs, export, losses, networks, replay
from amn_tf import experts as experts_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "amn_tf.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def experts(tmp_path_factory):
    """Two small expert SavedModels (Pong, Breakout) exported from fresh Nature DQNs with
    different seeds: real SavedModels with the expert signature, made in the test."""
    keras.mixed_precision.set_global_policy("float32")
    root = tmp_path_factory.mktemp("experts")
    paths = {}
    for seed, game in enumerate(["Pong", "Breakout"]):
        keras.utils.set_random_seed(seed)
        model = networks.nature_dqn(len(envs.legal_actions(game)))
        path = os.path.join(root, "experts", game, "1")
        export.export_expert(model, game, path, {"frames_trained": 0}, "paper")
        paths[game] = path
    return root, paths


def test_masks_for_real_games_with_different_action_sets():
    pong, breakout, seaquest = (envs.legal_mask(g) for g in ("Pong", "Breakout", "Seaquest"))
    assert np.flatnonzero(pong).tolist() == [0, 1, 3, 4, 11, 12]
    assert np.flatnonzero(breakout).tolist() == [0, 1, 3, 4]
    assert seaquest.all()
    # An AMN's masked policy puts zero probability on another game's extra actions.
    logits = tf.constant(np.random.default_rng(0).normal(size=(2, 18)), tf.float32)
    mask = tf.constant(np.stack([pong, breakout]))
    probabilities = tf.exp(losses.masked_log_softmax(logits, mask)).numpy()
    assert np.all(probabilities[0][~pong] == 0) and np.all(probabilities[1][~breakout] == 0)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-6)


def test_find_experts_resolves_directories_and_rejects_bad_sets(experts):
    root, paths = experts
    found = experts_lib.find_experts([os.path.join(root, "experts")])
    assert sorted(game for game, _ in found) == ["Breakout", "Pong"]
    only = experts_lib.find_experts([paths["Pong"]], ["Pong"])
    assert [g for g, _ in only] == ["Pong"]
    with pytest.raises(ValueError, match="more than one expert for Pong"):
        experts_lib.find_experts([paths["Pong"], os.path.join(root, "experts", "Pong")])
    with pytest.raises(ValueError, match="no expert for Seaquest"):
        experts_lib.find_experts([os.path.join(root, "experts")], ["Seaquest"])
    empty = os.path.join(root, "empty")
    os.makedirs(empty, exist_ok=True)
    with pytest.raises(ValueError, match="no expert SavedModels found"):
        experts_lib.find_experts([empty])
    with pytest.raises(ValueError, match="does not exist"):
        experts_lib.find_experts([os.path.join(root, "missing")])
    a_file = os.path.join(root, "notes.txt")
    open(a_file, "w").close()
    with pytest.raises(ValueError, match="notes.txt is a file, not a SavedModel directory"):
        experts_lib.find_experts([a_file])


def test_find_experts_loads_only_the_games_asked_for(experts, tmp_path):
    """With --games, an expert whose assets/amn_tf.json names another game is not loaded (eight
    shipped experts, two games: two SavedModels loaded, not eight); one asked for still is, and
    its own errors still stop the run."""
    import shutil

    root, _ = experts
    copy = tmp_path / "experts"
    shutil.copytree(os.path.join(root, "experts"), copy)
    (copy / "Breakout" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    only = experts_lib.find_experts([str(copy)], ["Pong"])  # Breakout's broken file is never read
    assert [(g, loaded.games) for g, loaded in only] == [("Pong", ["Pong"])]
    with pytest.raises(export.SavedModelError, match="could not be loaded"):
        experts_lib.find_experts([str(copy)], ["Breakout"])
    with pytest.raises(ValueError, match="no expert for Seaquest among Breakout, Pong"):
        experts_lib.find_experts([str(copy)], ["Seaquest"])
    # Without the metadata file the SavedModel is loaded to learn its game, as before.
    os.remove(copy / "Pong" / "1" / "assets" / export.METADATA_FILE)
    assert [g for g, _ in experts_lib.find_experts([str(copy / "Pong")], ["Pong"])] == ["Pong"]


def _memories_with_states(count, seed=0, expert_outputs=None):
    """``count`` one-stream memories of random states; with ``expert_outputs`` they store
    each state's expert outputs, computed as the state is written (as training does)."""
    rng = np.random.default_rng(seed)
    memories = []
    for index in range(count):
        outputs = (lambda states: None) if expert_outputs is None else (
            lambda states, index=index: expert_outputs.of_game(index, states))
        memory = replay.ReplayMemory(64, 1, seed=seed, outputs=expert_outputs.memory_outputs(index)
                                     if expert_outputs is not None else None)
        obs = rng.integers(0, 255, (1, 84, 84, 4), dtype=np.uint8)
        memory.start_episodes([0], obs, outputs(obs))
        for _ in range(30):  # each next observation: the last one shifted, a new frame last
            obs = np.concatenate([obs[..., 1:], rng.integers(0, 255, (1, 84, 84, 1), dtype=np.uint8)], -1)
            memory.append([0], [0], [0.0], [False], [False], [False], obs, outputs(obs))
        memories.append(memory)
    return memories


def _pong_breakout_amn(experts):
    """The Pong and Breakout experts, their game order and masks, and a fresh small AMN."""
    keras.mixed_precision.set_global_policy("float32")
    _, paths = experts
    found = experts_lib.find_experts([paths["Pong"], paths["Breakout"]])
    games = [g for g, _ in found]
    masks = np.stack([envs.legal_mask(g) for g in games])
    keras.utils.set_random_seed(3)
    return found, games, masks, networks.build_network("small", 18, "amn")


def test_learner_reads_stored_expert_outputs_and_matches_hand_loss(experts):
    """The learner's batch carries the experts' outputs stored with its states; they equal
    the experts run on those states (Q exactly, features to float16), and the loss computed
    from them equals the cross-entropy and feature regression computed by hand in numpy."""
    found, games, masks, amn = _pong_breakout_amn(experts)
    regressors = networks.feature_regressors(512, [512, 512])
    callables = [experts_lib.expert_callable(loaded) for _, loaded in found]
    expert_outputs = experts_lib.ExpertOutputs(callables, masks, [512, 512], features=True)
    memories = _memories_with_states(2, expert_outputs=expert_outputs)
    dataset = replay.multitask_state_dataset(memories, 4, prefetch=0)
    # The experts are given too, only for the comparison with running them in the step.
    learner = actor_mimic.AmnLearner(amn, regressors, callables, masks, keras.optimizers.Adam(1e-3),
                                     dataset, tau=1.0, beta=0.01)
    batch = next(iter(replay.multitask_state_dataset(memories, 4, prefetch=0)))
    states, game_index, stored_q, stored_features = batch
    assert stored_q.dtype == tf.float32 and stored_features.dtype == tf.float16
    # Stored Q at ALE ids: game 0 (Pong) rows carry Pong's q_values at its legal ids, 0 elsewhere.
    pong_q = found[0][1].signature(frames=states[:4])["q_values"].numpy()
    np.testing.assert_allclose(stored_q.numpy()[:4][:, envs.legal_actions(games[0])], pong_q,
                               rtol=1e-6, atol=1e-6)
    assert np.all(stored_q.numpy()[~masks[game_index.numpy()]] == 0)
    # The same targets as the experts run in the step (the previous learner) give.
    in_step_q, in_step_features = learner.expert_targets(states)
    np.testing.assert_allclose(stored_q.numpy(), in_step_q.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stored_features.numpy().astype(np.float32), in_step_features.numpy(),
                               rtol=2**-11, atol=1e-6)
    # The learner's loss on that batch equals the hand computation from the stored outputs.
    expert_q = stored_q.numpy()
    expert_features = stored_features.numpy().astype(np.float32)
    loss, _, metrics = learner.compute(batch)
    logits, features = amn(states)
    expected = []
    for row in range(8):
        legal = masks[game_index[row].numpy()]
        q = expert_q[row][legal]
        target = np.exp(q - q.max()) / np.exp(q - q.max()).sum()
        z = logits.numpy()[row][legal]
        log_student = z - z.max() - np.log(np.exp(z - z.max()).sum())
        expected.append(-(target * log_student).sum())
    np.testing.assert_allclose(metrics["policy_loss"].numpy(), np.mean(expected), rtol=1e-4)
    predicted = np.concatenate([regressors[i](features[i * 4 : (i + 1) * 4]).numpy() for i in range(2)])
    hand_feature = np.mean(0.5 * ((predicted - expert_features) ** 2).sum(-1))
    np.testing.assert_allclose(metrics["feature_loss"].numpy(), hand_feature, rtol=1e-4)
    np.testing.assert_allclose(loss.numpy(), np.mean(expected) + 0.01 * hand_feature, rtol=1e-4)
    # A batch of bare states still runs the experts in the step: the same policy loss.
    _, _, in_step = learner.compute((states, game_index))
    np.testing.assert_allclose(in_step["policy_loss"].numpy(), np.mean(expected), rtol=1e-5)
    np.testing.assert_allclose(in_step["feature_loss"].numpy(), hand_feature, rtol=1e-3)
    # A few updates from the stored outputs move the AMN towards the experts.
    first = float(learner.step()["policy_loss"])
    for _ in range(30):
        last = float(learner.step()["policy_loss"])
    assert last < first
    assert int(learner.updates.numpy()) == 31


def test_stored_expert_outputs_equal_the_experts_on_sampled_states(experts):
    """Real play of two games into small rings (wrapped around, episodes restarted): the
    outputs stored with each sampled state equal its expert run on that state again."""
    import dataclasses

    from amn_tf import multigame

    keras.mixed_precision.set_global_policy("float32")
    root, paths = experts
    found = experts_lib.find_experts([paths["Pong"], paths["Breakout"]])
    games = [g for g, _ in found]
    masks = np.stack([envs.legal_mask(g) for g in games])
    expert_outputs = experts_lib.ExpertOutputs([experts_lib.expert_callable(lp) for _, lp in found],
                                               masks, [512, 512], features=True)
    memories = [replay.ReplayMemory(2 * 24, 2, seed=i, outputs=expert_outputs.memory_outputs(i))
                for i in range(2)]
    protocol = dataclasses.replace(envs.PROTOCOLS["paper"], max_episode_frames=100)  # 25 steps
    play = multigame.GamePlay(games, memories, 2, protocol, 0, "vector", annotate=expert_outputs)
    rng = np.random.default_rng(0)
    def check_q_values_now():  # what an expert that plays reads instead of running again
        for index, (game, loaded) in enumerate(found):
            np.testing.assert_allclose(play.q_values_now[index][:, masks[index]],
                                       loaded.outputs(play.observations[index], game)["q_values"].numpy(),
                                       rtol=1e-6, atol=1e-6)

    try:
        play.new_episodes(0)
        check_q_values_now()
        for _ in range(70):
            play.send([envs.random_legal_actions(rng, env.legal_actions, 2) for env in play.envs])
            play.recv()
            check_q_values_now()  # across episode ends too: a new episode's first state's
    finally:
        play.close()
    assert set(play.last_returns) == set(games)  # episodes ended and new ones started
    for index, (_, loaded) in enumerate(found):
        memory = memories[index]
        assert memory.entries_written > 2 * memory.capacity  # wrapped, with episode starts
        states, stored = memory.sample_states(48, outputs=True)
        again = loaded.signature(frames=tf.constant(states))
        np.testing.assert_allclose(stored["q_values"][:, masks[index]], again["q_values"].numpy(),
                                   rtol=1e-6, atol=1e-6)
        assert np.all(stored["q_values"][:, ~masks[index]] == 0)
        recomputed = again["features"].numpy()
        assert stored["features"].dtype == np.float16
        # float16 storage: within rounding of the features recomputed now
        np.testing.assert_allclose(stored["features"].astype(np.float32), recomputed, rtol=2**-11, atol=1e-6)
        assert len(np.unique(stored["q_values"], axis=0)) > 10  # many different states


def test_learner_uses_each_games_tau(experts):
    """Two games, two temperatures: each sample's target is softmax(Q / its game's tau)."""
    found, games, masks, amn = _pong_breakout_amn(experts)
    memories = _memories_with_states(2)
    dataset = replay.multitask_state_dataset(memories, 4, prefetch=0)
    callables = [experts_lib.expert_callable(loaded) for _, loaded in found]
    taus = [0.05, 2.0]  # game 0, game 1
    learner = actor_mimic.AmnLearner(amn, networks.feature_regressors(512, [512, 512]), callables,
                                     masks, keras.optimizers.Adam(1e-3), dataset, tau=taus, beta=0.0)
    np.testing.assert_allclose(learner.temperatures.numpy(), taus)
    states, game_index = next(iter(replay.multitask_state_dataset(memories, 4, prefetch=0)))
    assert game_index.numpy().tolist() == [0] * 4 + [1] * 4
    expert_q, expert_features = learner.expert_targets(states)
    logits = amn(states)[0].numpy()

    def hand_loss(taus):  # mean over samples of -sum_a softmax(q / tau_game)_a log softmax(z)_a
        per_sample = []
        for row in range(8):
            game = game_index[row].numpy()
            legal = masks[game]
            q = expert_q.numpy()[row][legal].astype(np.float64) / taus[game]
            target = np.exp(q - q.max()) / np.exp(q - q.max()).sum()
            z = logits[row][legal].astype(np.float64)
            per_sample.append(-(target * (z - z.max() - np.log(np.exp(z - z.max()).sum()))).sum())
        return np.mean(per_sample)

    policy_loss = learner.losses(states, game_index, expert_q, expert_features)[0].numpy()
    np.testing.assert_allclose(policy_loss, hand_loss(taus), rtol=1e-4)
    # Not the loss of either tau for both games.
    for tau in taus:
        assert abs(policy_loss - hand_loss([tau, tau])) > 1e-3
    # set_temperatures changes them for the next step (the one training uses after --tau=auto).
    learner.set_temperatures([2.0, 0.05])
    policy_loss = learner.losses(states, game_index, expert_q, expert_features)[0].numpy()
    np.testing.assert_allclose(policy_loss, hand_loss([2.0, 0.05]), rtol=1e-4)
    assert np.isfinite(float(learner.step()["loss"]))
    with pytest.raises(ValueError, match="3 temperatures for 2 games"):
        learner.set_temperatures([1.0, 1.0, 1.0])


@pytest.mark.slow
def test_amn_run_with_auto_tau_prints_stores_and_exports_its_taus(experts, tmp_path):
    from amn_tf import temperature

    root, _ = experts
    run_dir, export_dir = tmp_path / "run", tmp_path / "export"
    result = run_main("--flagfile=flags/amn_smoke.flags", f"--experts={root}/experts", "--tau=auto",
                      "--tau_target_top_probability=0.6", "--amn_steps=200", "--held_out_states=24",
                      f"--run_dir={run_dir}", f"--export_dir={export_dir}", "--amn_name=auto")
    assert result.returncode == 0, result.stderr[-3000:]
    stored = json.load(open(run_dir / "temperatures.json"))
    assert stored["tau"] == "auto" and stored["target_top_probability"] == 0.6
    # Chosen on the held-out expert states measured before training (--held_out_states of
    # them per game): recomputed here.
    held_out = np.load(run_dir / "held_out.npz")
    assert [held_out[g].shape for g in ("Pong", "Breakout")] == [(24, 84, 84, 4)] * 2
    assert "(at tau 1: " in result.stdout and "24 held-out states per game" in result.stdout
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "frames " in line and "| loss" in line)
    taus = {}
    for game in ("Pong", "Breakout"):
        loaded = export.LoadedPolicy(f"{root}/experts/{game}/1")
        q = loaded.outputs(held_out[game], game)["q_values"].numpy()
        taus[game] = stored["games"][game]["tau"]
        assert taus[game] == pytest.approx(temperature.auto_temperature(q, None, 0.6), rel=1e-6)
        assert stored["games"][game]["median_top_probability"] == pytest.approx(0.6, abs=1e-6)
        printed = [line for line in lines[:start] if f"] tau {game}: {taus[game]:.4g} (auto)" in line]
        assert len(printed) == 1, result.stdout[:4000]
        assert "median top-action probability 0.600 (at tau 1: " in printed[0]
    loaded = export.LoadedPolicy(str(export_dir / "amn" / "auto" / "1"))
    assert loaded.metadata["tau"] == taus
    assert loaded.metadata["provenance"]["tau"] == "auto"
    assert loaded.metadata["provenance"]["tau_target_top_probability"] == 0.6


@pytest.mark.slow
def test_amn_run_through_main_exports_and_reloads(experts, tmp_path):
    root, _ = experts
    run_dir, export_dir = tmp_path / "run", tmp_path / "export"
    result = run_main("--flagfile=flags/amn_smoke.flags", f"--experts={root}/experts",
                      f"--run_dir={run_dir}", f"--export_dir={export_dir}", "--amn_name=tiny",
                      "--tau=1.0", "--beta=0.01")  # feature regression end to end (default: off)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| Pong |" in result.stdout and "| Breakout |" in result.stdout
    assert "SavedModel:" in result.stdout
    # Before any training: each expert named with its provenance, and the untrained ones
    # (here: fresh networks that score what random play scores in 50 steps) warned about.
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "frames " in line and "| loss" in line)
    named = [line for line in lines[:start] if f"] expert Pong: {root}/experts/Pong/1 (" in line]
    assert len(named) == 1 and "trained in" in named[0], result.stdout[:3000]
    warned = [line for line in lines[:start] if "WARNING: expert Pong" in line]
    assert len(warned) == 1 and "plays no better than random" in warned[0], result.stdout[:3000]
    measured = json.load(open(run_dir / "experts.json"))
    assert measured["Pong"]["mean"] <= measured["Pong"]["random_mean"]
    history = [json.loads(line) for line in open(run_dir / "eval.jsonl")]
    assert [r["step"] for r in history] == [200, 400]
    assert set(history[-1]["games"]) == {"Pong", "Breakout"}
    events = [f for f in os.listdir(run_dir / "tensorboard") if f.startswith("events.out.tfevents")]
    assert events
    path = export_dir / "amn" / "tiny" / "1"
    loaded = export.LoadedPolicy(str(path))
    assert loaded.kind == "amn" and loaded.games == ["Breakout", "Pong"]
    assert loaded.metadata["legal_actions"]["Breakout"] == [0, 1, 3, 4]
    assert loaded.metadata["tau"] == {"Breakout": 1.0, "Pong": 1.0}  # --tau=1.0 for every game
    # The SavedModel equals the checkpointed Keras AMN for every game id.
    keras.mixed_precision.set_global_policy("float32")
    amn = networks.build_network("small", 18, "amn")
    checkpoint_dir = sorted((run_dir / "checkpoints").iterdir())[-1]
    tf.train.Checkpoint(amn=amn).read(str(checkpoint_dir / "weights")).expect_partial()
    frames = np.random.default_rng(1).integers(0, 255, (5, 84, 84, 4), dtype=np.uint8)
    keras_logits, keras_features = (t.numpy() for t in amn(frames))
    for game_id, game in enumerate(loaded.games):
        out = loaded.signature(frames=tf.constant(frames), game_id=tf.fill([5], game_id))
        mask = envs.legal_mask(game)
        # exported in float32: equal to the float32 Keras AMN with the checkpointed weights
        np.testing.assert_allclose(out["logits"].numpy()[:, mask], keras_logits[:, mask], atol=1e-5, rtol=1e-5)
        assert np.all(out["logits"].numpy()[:, ~mask] == -1e9)
        assert set(out["action"].numpy()) <= set(envs.legal_actions(game).tolist())
        assert out["action"].dtype == tf.int32 and out["features"].shape == (5, 512)
        np.testing.assert_allclose(out["features"].numpy(), keras_features, atol=1e-5, rtol=1e-5)
    # Rerunning the finished run reports it instead of training again.
    again = run_main("--flagfile=flags/amn_smoke.flags", f"--experts={root}/experts",
                     f"--run_dir={run_dir}", f"--export_dir={export_dir}", "--amn_name=tiny")
    assert again.returncode == 0 and "already finished" in again.stdout
    # A larger budget trains the finished run further and exports a second version.
    longer = run_main("--flagfile=flags/amn_smoke.flags", f"--experts={root}/experts",
                      f"--run_dir={run_dir}", f"--export_dir={export_dir}", "--amn_name=tiny",
                      "--amn_steps=600")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert "extending the finished run from 1,600 to 2,400 frames per game" in longer.stdout
    assert [json.loads(line)["step"] for line in open(run_dir / "eval.jsonl")] == [200, 400, 600]
    assert (export_dir / "amn" / "tiny" / "2" / "saved_model.pb").exists()
    # report mode turns the run directory into Table 1 and learning curves.
    report = run_main("--mode=report", f"--report_runs={run_dir}", f"--report_dir={tmp_path / 'docs'}")
    assert report.returncode == 0, report.stderr[-2000:]
    table = (tmp_path / "docs" / "table1.md").read_text()
    assert "| Pong |" in table and "| Breakout |" in table and "2,400 frames per game" in table
    with open(tmp_path / "docs" / "amn_curves.png", "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    # eval mode plays the AMN for one of its games, and refuses one it does not know.
    amn_json = tmp_path / "amn-eval.json"
    good = run_main("--mode=eval", f"--saved_model={path}", "--game=Pong", "--eval_episodes=1",
                    "--eval_max_steps=30", "--eval_envs=1", f"--output_json={amn_json}")
    assert good.returncode == 0 and "Pong: mean" in good.stdout
    # The eval JSON says who played; report turns it, beside an expert's, into Table 1
    # through the SavedModels (AMN mean as % of the expert's).
    amn_eval = json.loads(amn_json.read_text())
    assert amn_eval["kind"] == "amn" and amn_eval["games"] == ["Pong"]
    expert_json = tmp_path / "expert-eval.json"
    expert_json.write_text(json.dumps({"saved_model": "saved_models/experts/Pong/1", "kind": "expert",
                                       "random_policy": False, "results": [
                                           {"game": "Pong", "mean": -4.0, "max": 2.0, "episodes": 30}]}))
    table = run_main("--mode=report", f"--report_evals={amn_json},{expert_json}",
                     f"--report_dir={tmp_path / 'docs'}")
    assert table.returncode == 0, table.stderr[-2000:]
    amn_mean, episodes = amn_eval["results"][0]["mean"], amn_eval["results"][0]["episodes"]
    amn_max = amn_eval["results"][0]["max"]
    text = (tmp_path / "docs" / "table1_saved_models.md").read_text()
    assert f"| Pong | - | -4.0 (2) | {'/'.join(sorted({str(episodes), '30'}))} | {amn_mean:.1f} " in text
    # % of the expert's mean, then of its max
    assert f"| {100 * amn_mean / -4.0 + 0.0:.0f}% / {100 * amn_max / 2.0 + 0.0:.0f}% |" in text
    bad = run_main("--mode=eval", f"--saved_model={path}", "--game=Seaquest")
    assert bad.returncode != 0 and "not Seaquest" in bad.stderr and "Traceback" not in bad.stderr


def test_amn_games_default_to_the_papers_eight_only_from_the_shipped_directory(experts):
    """With --experts left at saved_models/experts (it ships DemonAttack too) --mode=amn distills
    the paper's eight Table 1 source games; with --experts given, every game found there;
    --games always wins."""
    from conftest import parsed_flags

    from amn_tf import cli

    root, _ = experts
    with parsed_flags("--mode=amn") as values:
        assert cli.build(values).games == envs.TABLE1_GAMES
    with parsed_flags("--mode=amn", f"--experts={root}/experts") as values:
        assert cli.build(values).games is None
    with parsed_flags("--mode=amn", "--games=pong,BOXING") as values:
        assert cli.build(values).games == ("Pong", "Boxing")


def test_experts_play_their_first_expert_steps_then_the_amn(experts, tmp_path, capsys):
    """--amn_expert_steps=8 (epsilon 0, --amn_acting=inline): at agent steps 0-7 every game's
    actions are its expert's greedy actions on the current observations, from step 8 the AMN's."""
    from conftest import parsed_flags

    from amn_tf import cli

    root, _ = experts
    with parsed_flags("--mode=amn", f"--experts={root}/experts", "--amn_epsilon=0", "--num_envs=3",
                      "--amn_expert_steps=8", "--amn_acting=inline", f"--run_dir={tmp_path / 'r'}") as values:
        config = cli.build(values)
    found = experts_lib.find_experts(config.experts, config.games)
    keras.utils.set_random_seed(3)  # the AMN's initial weights: the same whatever ran before
    agent = actor_mimic.AmnAgent(config, found, str(tmp_path / "r"))
    agent.start(0, False)
    assert "the experts play each game's agent steps 0 to 8 (--amn_expert_steps), then the AMN" in capsys.readouterr().out
    try:
        told_apart = {"expert": 0, "amn": 0}
        for step in (0, 2, 5, 7, 8, 9, 11, 13):
            observations = agent.play.observations
            by_expert = [agent.loaded[g].act(obs, g) for g, obs in zip(agent.games, observations)]
            by_amn = agent.acting_policy(np.concatenate(observations), agent.game_of_env).reshape(len(agent.games), -1)
            agent.act(step)
            sent = agent.play._actions
            player, wanted = ("expert", by_expert) if step < 8 else ("amn", by_amn)
            for actions, expected in zip(sent, wanted):
                np.testing.assert_array_equal(actions, expected)
            # Steps where the two would play differently are the ones that tell who played.
            told_apart[player] += any(not np.array_equal(e, a) for e, a in zip(by_expert, by_amn))
            agent.observe()
        assert told_apart["expert"] >= 1 and told_apart["amn"] >= 1, told_apart
    finally:
        agent.close()


def test_after_the_experts_steps_the_amn_plays_in_its_acting_thread(experts, tmp_path, capsys):
    """--amn_expert_steps=8 with the default acting: the experts play steps 0-7 in this thread
    (their greedy actions sent, as above); at step 8 the emulators they played close and the AMN's
    acting thread takes over the same replay streams, its chunks recorded with their outputs."""
    import threading

    from conftest import parsed_flags

    from amn_tf import cli

    root, _ = experts
    with parsed_flags("--mode=amn", f"--experts={root}/experts", "--amn_epsilon=0", "--num_envs=3",
                      "--amn_expert_steps=8", "--actor_chunk_steps=5", f"--run_dir={tmp_path / 'r'}") as values:
        config = cli.build(values)
    assert config.acting == "thread"
    found = experts_lib.find_experts(config.experts, config.games)
    agent = actor_mimic.AmnAgent(config, found, str(tmp_path / "r"))
    agent.start(0, False)
    assert "(--amn_expert_steps), then the AMN in its acting thread" in capsys.readouterr().out
    try:
        step = 0
        while step < 8:
            inline = agent.play
            by_expert = [agent.loaded[g].act(obs, g) for g, obs in zip(agent.games, inline.observations)]
            step += agent.act(step)
            for actions, expected in zip(inline._actions, by_expert):
                np.testing.assert_array_equal(actions, expected)
            agent.observe()
        assert agent.acting == "inline" and step == 9  # 3 vector steps of 3 envs
        cursors = [memory.cursor.copy() for memory in agent.memories]
        assert agent.act(step) == 5 * 3  # one chunk: 5 vector steps of 3 envs, played in the thread
        assert agent.acting == "thread" and isinstance(agent.play, actors.ThreadActors)
        assert "agent step 9: the experts' steps are over" in capsys.readouterr().out
        assert [t for t in threading.enumerate() if t.name.startswith("amn-actor")]
        for memory, before in zip(agent.memories, cursors):
            # the same streams: a new first observation (4 entries) and 5 steps on each
            np.testing.assert_array_equal(memory.cursor, before + 4 + 5)
            states, stored = memory.sample_states(16, outputs=True)
            assert stored["q_values"].shape == (16, 18)
        agent.observe()
    finally:
        agent.close()


@pytest.mark.parametrize("end", [None, 1e-4])
def test_the_learning_rate_decays_linearly_over_the_run_to_its_end_value(experts, tmp_path, end):
    """--amn_learning_rate_end: the optimizer's rate at a point of the run (the runner's fraction,
    0 to 1) is linear from --amn_learning_rate to the end value; unset, it stays constant. The
    progress line's scalars carry it."""
    from conftest import parsed_flags

    from amn_tf import cli

    root, _ = experts
    extra = [] if end is None else [f"--amn_learning_rate_end={end}"]
    with parsed_flags("--mode=amn", f"--experts={root}/experts", "--amn_learning_rate=0.001",
                      f"--run_dir={tmp_path / 'r'}", *extra) as values:
        config = cli.build(values)
    agent = actor_mimic.AmnAgent(config, experts_lib.find_experts(config.experts, config.games),
                                 str(tmp_path / "r"))
    # hand values: 0.001 + (0.0001 - 0.001) * f
    expected = {0.0: 0.001, 0.5: 0.00055, 0.9: 0.00019, 1.0: 0.0001} if end else dict.fromkeys((0.0, 0.5, 0.9, 1.0), 0.001)
    for fraction, rate in expected.items():
        agent.progress(fraction)
        assert float(agent.optimizer.learning_rate) == pytest.approx(rate, rel=1e-6)
        scalars = agent.train_scalars({"loss": 1.0, "policy_loss": 1.0, "feature_loss": 0.0, "agreement": 0.5}, 100.0)
        assert scalars["charts/learning_rate"] == pytest.approx(rate, rel=1e-6)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tau=0"], "--tau must be > 0"),
        (["--tau=-1"], "--tau must be > 0, got -1.0"),
        (["--tau=abc"], "--tau='abc': give a positive number (e.g. --tau=0.1) or 'auto'"),
        (["--tau=inf"], "--tau=inf is not a finite number"),
        (["--tau=auto", "--tau_target_top_probability=1"], "--tau_target_top_probability must be in (0, 1)"),
        (["--tau=auto", "--tau_target_top_probability=0.2"], "is not above 1/4, the top-action "
         "probability of a uniform policy over Breakout's 4 actions"),
        (["--beta=-1"], "--beta must be >= 0"),
        (["--batch_per_game=0"], "--batch_per_game must be >= 1"),
        (["--amn_learning_rate=0.001", "--amn_learning_rate_end=0.01"],
         "--amn_learning_rate_end=0.01 is above --amn_learning_rate=0.001: the schedule decays"),
        (["--games=Pong,pong"], "lists Pong twice"),
        (["--games=Seaquest"], "no expert for Seaquest"),
    ],
)
def test_amn_bad_input_one_line(experts, tmp_path, flags, message):
    root, _ = experts
    result = main_in_process("--mode=amn", f"--experts={root}/experts", f"--run_dir={tmp_path / 'r'}", *flags)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_amn_no_experts_found(tmp_path):
    result = main_in_process("--mode=amn", f"--experts={tmp_path}", f"--run_dir={tmp_path / 'r'}")
    assert result.returncode != 0 and "no expert SavedModels found" in result.stderr
    assert not os.path.exists(tmp_path / "r")  # nothing created for a rejected command


# ------------------------------------------------------------ synthetic MDP
def _random_mdp(rng, num_states=12, num_outputs=6, legal=(0, 2, 3, 5)):
    legal = np.asarray(legal)
    transitions = rng.dirichlet(np.full(num_states, 0.3), size=(num_states, len(legal)))
    rewards = rng.normal(size=(num_states, len(legal)))
    return transitions, rewards, legal


def _expert_q(transitions, rewards, gamma=0.9):
    q = np.zeros_like(rewards)
    for _ in range(500):
        q = rewards + gamma * transitions @ q.max(1)
    return q


def test_student_sampling_drives_linear_amn_to_expert_policy():
    """The paper's Lemma 1 / Theorem 1 setting: a linear AMN (logits = W phi(s)) trained by
    policy regression on states drawn from its *own* epsilon-greedy play converges to the
    expert's Boltzmann policy on the states it visits, and acts like the expert."""
    rng = np.random.default_rng(0)
    transitions, rewards, legal = _random_mdp(rng)
    num_states, num_outputs, tau = transitions.shape[0], 6, 1.0
    q_small = _expert_q(transitions, rewards)
    q_expert = np.full((num_states, num_outputs), -5.0)  # anything on illegal ids
    q_expert[:, legal] = q_small
    mask = np.zeros((num_states, num_outputs), bool)
    mask[:, legal] = True
    features = np.eye(num_states, dtype=np.float32)  # phi(s): one-hot, so W is a table
    weights = tf.Variable(tf.zeros([num_states, num_outputs]))
    optimizer = keras.optimizers.SGD(0.5)
    expert_pi = losses.expert_policy(tf.constant(q_expert, tf.float32), mask, tau).numpy()

    def student_pi():
        return tf.exp(losses.masked_log_softmax(tf.constant(features) @ weights, mask)).numpy()

    def visitation(pi, epsilon=0.1, horizon=200):
        behaviour = (1 - epsilon) * pi[:, legal] + epsilon / len(legal)
        step = np.einsum("sa,sat->st", behaviour, transitions)
        d = np.full(num_states, 1.0 / num_states)
        total = np.zeros(num_states)
        for _ in range(horizon):
            total += d
            d = d @ step
        return total / total.sum()

    def kl_on_student_states():
        pi = student_pi()
        d = visitation(pi)
        kl = (expert_pi * (np.log(expert_pi + 1e-12) - np.log(pi + 1e-12))).sum(1)
        return float(d @ kl), pi

    initial_kl, _ = kl_on_student_states()
    state = 0
    for _ in range(300):  # rounds: act with the student, then regress on its states
        batch = []
        pi = student_pi()
        for _ in range(16):
            batch.append(state)
            if rng.random() < 0.1:
                action_index = rng.integers(len(legal))
            else:
                action_index = rng.choice(len(legal), p=pi[state, legal] / pi[state, legal].sum())
            state = rng.choice(num_states, p=transitions[state, action_index])
        batch = np.asarray(batch)
        with tf.GradientTape() as tape:
            logits = tf.constant(features[batch]) @ weights
            loss = losses.policy_regression_loss(logits, q_expert[batch].astype(np.float32),
                                                 mask[batch], tau)
        gradients = tape.gradient(loss, [weights])
        # Illegal outputs never receive gradient.
        assert np.all(gradients[0].numpy()[:, ~mask[0]] == 0)
        optimizer.apply_gradients(zip(gradients, [weights]))
    final_kl, pi = kl_on_student_states()
    assert initial_kl > 0.3
    assert final_kl < 0.02 * initial_kl + 1e-3, (initial_kl, final_kl)
    assert np.all(pi[:, ~mask[0]] < 1e-6)  # no probability on illegal actions
    # Acting greedily, the student now chooses the expert's action in every visited state.
    d = visitation(pi)
    visited = d > 1e-3
    student_greedy = pi.argmax(1)
    expert_greedy = q_expert.argmax(1)
    assert np.mean(student_greedy[visited] == expert_greedy[visited]) == 1.0


def test_saved_model_table_percent_of_expert_and_bar(tmp_path):
    """Table 1 through the SavedModels: plain ratio to the expert's mean, games at or above
    90% counted per model, random beside them; a file that is not an eval JSON is one line."""
    from amn_tf import report

    def write(name, payload):
        path = tmp_path / name
        path.write_text(json.dumps(payload))
        return str(path)

    def results(**means):  # a mean, or (mean, max); the max is mean + 1 unless given
        pairs = {g: m if isinstance(m, tuple) else (m, m + 1) for g, m in means.items()}
        return [{"game": g, "mean": m, "max": x, "episodes": 30} for g, (m, x) in pairs.items()]

    paths = [
        write("e1.json", {"saved_model": "saved_models/experts/Boxing/1", "kind": "expert",
                          "results": results(Boxing=40.0)}),
        write("e2.json", {"saved_model": "saved_models/experts/Seaquest/1", "results": results(Seaquest=900.0)}),
        write("r.json", {"saved_model": None, "random_policy": True, "results": results(Boxing=0.5)}),
        write("a.json", {"saved_model": "saved_models/amn/amn-cpu/1", "kind": "amn",
                         "results": results(Boxing=(38.0, 20.0), Seaquest=720.0)}),
        write("m.json", {"saved_model": "runs/exports/multitask_dqn/mdqn-cpu/1", "kind": "multitask_dqn",
                         "results": results(Boxing=40.0, Seaquest=900.0)}),
    ]
    text = report.saved_model_table([item for p in paths for item in report.load_eval(p)])
    lines = text.splitlines()
    assert lines[0].startswith("| game | random mean | expert mean (max) | episodes | amn-cpu/1 mean (max) "
                               "| amn-cpu/1 % of expert (mean / max) |")
    # % of the expert's mean and of its max, as the paper's Table 1 (38/40, 20/41; 720/900, 721/901)
    assert "| Boxing | 0.5 | 40.0 (41) | 30 | 38.0 (20) | 95% / 49% | 40.0 (41) | 100% / 100% |" in lines
    assert "| Seaquest | - | 900.0 (901) | 30 | 720.0 (721) | 80% / 80% | 900.0 (901) | 100% / 100% |" in lines
    assert "amn-cpu/1: at least 90% of the expert on 1 of 2 games." in text
    assert "mdqn-cpu/1: at least 90% of the expert on 2 of 2 games." in text
    # None of these records count capped episodes: all named as measured the older way.
    assert "Episodes cut by the per-episode cap: none counted." in text
    assert "older test play" in text and "amn-cpu/1" in text.split("older test play")[1]
    # With capped counts: summed over each model's games.
    counted = [dict(item, results={g: dict(r, capped=c) for (g, r), c in zip(item["results"].items(), (2, 1))})
               for p in paths for item in report.load_eval(p)]
    text = report.saved_model_table(counted)
    # expert: two files of one game each (2 + 2); amn-cpu/1: one file of two games (2 + 1)
    assert "Episodes cut by the per-episode cap: expert 4 of 60, random 2 of 30, amn-cpu/1 3 of 60" in text
    assert "older test play" not in text
    with pytest.raises(config.ConfigError, match="is not an eval JSON"):
        report.load_eval(write("bad.json", {"runs": []}))
