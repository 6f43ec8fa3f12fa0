"""Transfer: weight copy from an AMN, legal mask in TD targets, a tiny run through main."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_clean_error, main_in_process

from amn_tf import checkpoints, dqn_agent, envs, export, networks, policies, replay, transfer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "amn_tf.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def amn(tmp_path_factory):
    """An AMN (random weights) exported as a SavedModel and saved as an AMN run directory
    with feature-regression heads in its checkpoint."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(7)
    root = tmp_path_factory.mktemp("amn")
    model = networks.build_network("small", 18, "amn")
    saved = os.path.join(root, "saved_models", "amn", "tiny", "1")
    export.export_multitask(model, ["Pong", "Boxing"], saved, {"network": "small"}, "paper")
    run_dir = os.path.join(root, "runs", "amn-tiny")
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, "run.json"), "w") as handle:
        json.dump({"mode": "amn", "games": ["Pong", "Boxing"], "network": "small"}, handle)
    heads = networks.feature_regressors(512, [512, 512])
    manager = checkpoints.CheckpointManager(os.path.join(run_dir, "checkpoints"))
    manager.save(10, {"amn": model, "regressor_0": heads[0], "regressor_1": heads[1]}, {"step": 10})
    return model, saved, run_dir


@pytest.mark.parametrize("source", ["saved_model", "run_dir"])
def test_every_amn_layer_is_copied_and_heads_are_not(amn, source):
    model, saved, run_dir = amn
    path = saved if source == "saved_model" else run_dir
    keras.utils.set_random_seed(123)  # a fresh network would differ from the AMN
    copied, origin = transfer.build_initial_network(f"amn:{path}", "Breakout")
    assert origin["init"] == "amn" and origin["source_games"] == ["Pong", "Boxing"]
    assert [layer.name for layer in copied.layers] == [layer.name for layer in model.layers]
    assert not any("regressor" in layer.name for layer in copied.layers)
    assert len(copied.get_weights()) == len(model.get_weights())
    for layer in model.layers:  # every layer, the 18-way output layer included
        for mine, theirs in zip(copied.get_layer(layer.name).get_weights(), layer.get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    frames = np.random.default_rng(0).integers(0, 255, (2, 84, 84, 4), dtype=np.uint8)
    np.testing.assert_allclose(copied(frames)[0].numpy(), model(frames)[0].numpy(), rtol=1e-6)


def test_random_init_differs_from_amn(amn):
    model, _, _ = amn
    fresh, origin = transfer.build_initial_network("random", "Breakout")
    assert origin == {"init": "random"}
    assert not transfer.initial_weights_equal(fresh, model)


def test_legal_mask_applies_to_the_max_in_td_targets():
    """An 18-way network on Breakout (legal ids 0, 1, 3, 4) whose output layer has zero
    kernel, so Q(s, a) = bias[a]: bias 1, 2, _, 3, 4 on the legal ids and 100 on id 17."""
    keras.mixed_precision.set_global_policy("float32")
    legal = envs.legal_actions("Breakout")
    online = networks.build_network("small", 18, "online")
    kernel, bias = online.get_layer(networks.OUTPUT_LAYER).get_weights()
    bias[:] = 0.0
    bias[[0, 1, 3, 4]] = [1.0, 2.0, 3.0, 4.0]
    bias[17] = 100.0
    online.get_layer(networks.OUTPUT_LAYER).set_weights([np.zeros_like(kernel), bias])
    target = keras.models.clone_model(online)
    target.set_weights(online.get_weights())
    output_actions, mask, action_to_output = policies.action_tables(legal, 18)
    np.testing.assert_array_equal(mask, envs.legal_mask("Breakout"))
    np.testing.assert_array_equal(output_actions, np.arange(18))
    memory = replay.ReplayMemory(64, 1)
    dataset = replay.transition_dataset(memory, 2, 0.99, True, prefetch=0)
    frames = np.zeros((2, 84, 84, 4), np.uint8)
    batch = {"s_tm1": frames, "a_tm1": np.array([3, 3], np.int32), "r_t": np.zeros(2, np.float32),
             "discount_t": np.full(2, 0.99, np.float32), "s_t": frames}
    for double in (False, True):
        learner = dqn_agent.DqnLearner(online, target, keras.optimizers.Adam(), dataset, action_to_output,
                                 mask, double_dqn=double)
        # target = 0 + 0.99 * max_{legal} Q = 0.99 * 4 = 3.96; Q(s, 3) = 3; error 0.96
        # Huber(0.96) = 0.5 * 0.96^2 = 0.4608. Without the mask: 0.99 * 100 - 3 = 96.
        loss = float(learner.loss({k: tf.constant(v) for k, v in batch.items()}))
        assert loss == pytest.approx(0.4608, rel=1e-5)


@pytest.mark.slow
def test_tiny_transfer_run_through_main(amn, tmp_path):
    _, saved, _ = amn
    run_dir, export_dir = tmp_path / "run", tmp_path / "export"
    result = run_main("--flagfile=flags/smoke.flags", "--mode=transfer", "--game=Breakout",
                      f"--init=amn:{saved}", f"--run_dir={run_dir}", f"--export_dir={export_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[transfer] Breakout from amn:" in result.stdout
    init = json.loads((run_dir / "init.json").read_text())
    assert init["source_games"] == ["Pong", "Boxing"]
    # a SavedModel outside the project is named by <kind>/<name>/<version>, not a bare "1"
    assert init["source"] == os.path.join(*str(saved).split(os.sep)[-3:])
    loaded = export.LoadedPolicy(str(export_dir / "transfer" / "Breakout-amn-tiny" / "1"))
    assert loaded.kind == "transfer" and loaded.games == ["Breakout"]
    out = loaded.outputs(np.zeros((3, 84, 84, 4), np.uint8), "Breakout")
    assert out["q_values"].shape == (3, 4)  # the expert signature: one Q per legal action
    assert set(out["action"].numpy()) <= {0, 1, 3, 4}
    # A source game as target is allowed, with a warning.
    warned = run_main("--flagfile=flags/smoke.flags", "--mode=transfer", "--game=Pong",
                      f"--init=amn:{saved}", f"--run_dir={tmp_path / 'pong'}",
                      f"--export_dir={export_dir}", "--training_steps=300", "--learning_starts=100")
    assert warned.returncode == 0 and "warning: Pong is one of the AMN's source games" in warned.stdout


class _OtherShape(tf.Module):
    def __init__(self):
        super().__init__()
        self.metadata = tf.Variable(json.dumps({"kind": "amn", "games": ["Pong"], "feature_size": 1,
                                                "game_ids": {"Pong": 0}}), dtype=tf.string)

    @tf.function(input_signature=[tf.TensorSpec([None, 64, 64, 4], tf.uint8, name="frames"),
                                  tf.TensorSpec([None], tf.int32, name="game_id")])
    def serve(self, frames, game_id):
        return {"logits": tf.zeros([tf.shape(frames)[0], 18])}


BUILD = """
import json, sys
from amn_tf import cli
cli.FLAGS(sys.argv)
print(json.dumps({"run_dir": cli.build().dqn.run_dir}))
"""


def _default_run_dir(cwd, init):
    result = subprocess.run([sys.executable, "-c", BUILD, "--mode=transfer", "--game=Breakout",
                             f"--init={init}", "--seed=1"], cwd=cwd, capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])["run_dir"], result.stdout


@pytest.mark.slow
def test_a_run_named_before_the_label_change_resumes_under_its_old_default_dir(tmp_path):
    init = "amn:saved_models/amn/amn-policy/1"
    run_dir, _ = _default_run_dir(tmp_path, init)
    assert run_dir == os.path.join("runs", "transfer-Breakout-amn-policy-seed1")
    older = tmp_path / "runs" / "transfer-Breakout-amn-amn-policy-seed1"
    older.mkdir(parents=True)
    run_dir, _ = _default_run_dir(tmp_path, init)  # not a run directory yet: the new name
    assert run_dir == os.path.join("runs", "transfer-Breakout-amn-policy-seed1")
    (older / "run.json").write_text(json.dumps({"mode": "transfer", "game": "Breakout", "init": init}))
    run_dir, output = _default_run_dir(tmp_path, init)
    assert run_dir == os.path.join("runs", "transfer-Breakout-amn-amn-policy-seed1")
    assert "resuming runs/transfer-Breakout-amn-amn-policy-seed1" in output
    (tmp_path / "runs" / "transfer-Breakout-amn-policy-seed1").mkdir()  # the new name wins once it exists
    assert _default_run_dir(tmp_path, init)[0] == os.path.join("runs", "transfer-Breakout-amn-policy-seed1")
    assert _default_run_dir(tmp_path, "amn:runs/cpu")[0] == os.path.join("runs", "transfer-Breakout-amn-cpu-seed1")


def test_bad_init_one_line(amn, tmp_path):
    """Through main's own error handling in-process (a real process prints the same:
    test_dqn_main's test_main_process_prints_a_bad_input_as_one_clean_error_line)."""
    _, saved, _ = amn
    keras.mixed_precision.set_global_policy("float32")
    expert_path = tmp_path / "expert"
    export.export_expert(networks.nature_dqn(4), "Breakout", str(expert_path), {}, "paper")
    other = tmp_path / "other_shape"
    module = _OtherShape()
    tf.saved_model.save(module, str(other), signatures={"serving_default": module.serve})
    cases = [
        (f"--init=amn:{expert_path}", "not an AMN"),
        (f"--init=amn:{tmp_path / 'missing'}", "does not exist"),
        (f"--init=amn:{other}", "uint8 [None, 84, 84, 4]"),
        ("--init=imagenet", "use 'random' or 'amn:PATH'"),
    ]
    for init, message in cases:
        result = main_in_process("--flagfile=flags/smoke.flags", "--mode=transfer", "--game=Breakout",
                                 init, f"--run_dir={tmp_path / 'r'}", f"--export_dir={tmp_path / 'e'}")
        assert message in assert_clean_error(result), (init, result.stderr[-500:])
        assert not (tmp_path / "e").exists()
    unknown = main_in_process("--flagfile=flags/smoke.flags", "--mode=transfer", "--game=Brekout",
                              f"--init=amn:{saved}", f"--run_dir={tmp_path / 'r2'}")
    assert "Breakout" in assert_clean_error(unknown)


@pytest.mark.slow
def test_report_table2_from_real_tiny_transfer_runs(amn, tmp_path):
    _, saved, _ = amn
    runs = []
    for init, seed in [("random", 0), ("random", 1), (f"amn:{saved}", 0)]:
        run_dir = tmp_path / f"{init.split(':')[0]}-{seed}"
        result = run_main("--flagfile=flags/smoke.flags", "--mode=transfer", "--game=Breakout",
                          f"--init={init}", f"--seed={seed}", f"--run_dir={run_dir}",
                          f"--export_dir={tmp_path / 'export'}", "--eval_period=200",
                          "--training_steps=400", "--learning_starts=100")
        assert result.returncode == 0, result.stderr[-2000:]
        runs.append(str(run_dir))
    report = run_main("--mode=report", f"--report_runs={','.join(runs)}",
                      f"--report_dir={tmp_path / 'docs'}", "--report_blocks=2", "--reach_score=-1")
    assert report.returncode == 0, report.stderr[-2000:]
    table = (tmp_path / "docs" / "table2.md").read_text()
    assert "## Breakout" in table
    random_row = next(line for line in table.splitlines() if line.startswith("| random |"))
    amn_row = next(line for line in table.splitlines() if line.startswith("| amn-tiny |"))
    assert "| 2 |" in random_row and "| 1 |" in amn_row  # seeds per init
    first_eval = json.loads((tmp_path / "random-0" / "eval.jsonl").read_text().splitlines()[0])["frames"]
    per_seed = random_row.rstrip(" |").rsplit("|", 1)[1].strip()
    assert per_seed == f"{first_eval:,}, {first_eval:,}"  # every run reaches -1 at its first eval
    assert "**" in table  # best per column marked
    # Uninterrupted runs record every update their steps imply: no run is named for fewer.
    assert "learner updates" not in table
    assert [r["updates"] for r in map(json.loads, (tmp_path / "random-0" / "eval.jsonl").read_text().splitlines())] == [
        (200 - 100) // 4, (400 - 100) // 4]
    assert (tmp_path / "docs" / "transfer_curves.png").read_bytes()[:4] == b"\x89PNG"
    # With --report_evals: each seed's exported DQN through its SavedModel, and random play.
    # A run directory stands for the SavedModel it exported (the runs finished in order, so
    # seed 0 exported version 1 and seed 1 version 2).
    evals = {"random-seed0": ["--saved_model=" + runs[0]], "random-seed1": ["--saved_model=" + runs[1]],
             "random-play": ["--random_policy", "--game=Breakout"]}
    for name, args in evals.items():
        done = run_main("--mode=eval", *args, "--eval_episodes=1", "--eval_envs=1",
                        "--eval_max_steps=200", f"--output_json={tmp_path / name}.json")
        assert done.returncode == 0, done.stderr[-2000:]
    for seed in (0, 1):
        evaluated = json.loads((tmp_path / f"random-seed{seed}.json").read_text())["saved_model"]
        assert evaluated == os.path.join("transfer", "Breakout-random", str(seed + 1))  # portable name
    means = {n: json.loads((tmp_path / f"{n}.json").read_text())["results"][0]["mean"] for n in evals}
    report = run_main("--mode=report", f"--report_runs={','.join(runs)}",
                      f"--report_dir={tmp_path / 'docs'}", "--report_blocks=2", "--reach_score=-1",
                      "--report_evals=" + ",".join(f"{tmp_path / n}.json" for n in evals))
    assert report.returncode == 0, report.stderr[-2000:]
    table = (tmp_path / "docs" / "table2.md").read_text()
    assert "final, SavedModel |" in table and not (tmp_path / "docs" / "table1_saved_models.md").exists()
    random_row = next(line for line in table.splitlines() if line.startswith("| random |"))
    seeds = f"{means['random-seed0']:.1f}, {means['random-seed1']:.1f}"
    assert random_row.endswith(f" {(means['random-seed0'] + means['random-seed1']) / 2:.1f} ({seeds}) |")
    amn_row = next(line for line in table.splitlines() if line.startswith("| amn-tiny |"))
    assert amn_row.endswith(" - |")  # not evaluated afterwards
    assert f"Random play (uniform legal actions): {means['random-play']:.1f}." in table


@pytest.mark.slow
def test_rank_sources_prints_a_ranking_of_every_source(amn, tmp_path):
    _, saved, _ = amn
    output = tmp_path / "rank.json"
    result = run_main("--mode=rank_sources", "--game=Breakout", f"--init=amn:{saved}",
                      "--eval_episodes=1", "--eval_max_steps=100", "--eval_envs=1",
                      f"--output_json={output}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| rank | source |" in result.stdout
    ranking = json.loads(output.read_text())["ranking"]
    assert sorted(r["source"] for r in ranking) == ["Boxing", "Pong"]
    assert [r["rank_score"] for r in ranking] == sorted(r["rank_score"] for r in ranking)
    for row in ranking:
        assert -1.0 <= row["feature_overlap"] <= 1.0
        assert row["shared_actions"] == 4  # Breakout's 4 actions are legal in Pong and Boxing
    refused = run_main("--mode=rank_sources", "--game=Breakout", "--init=random")
    assert refused.returncode != 0 and "needs --init=amn:PATH" in refused.stderr


@pytest.mark.slow
def test_initial_q_script_reports_each_inits_action_spread(amn, capsys):
    """scripts/initial_q.py: per init, the spread between the best and worst legal action of the
    initial network on the target's random-play states, as computed here from the same network."""
    import importlib.util

    _, saved, _ = amn
    spec = importlib.util.spec_from_file_location("initial_q", os.path.join(ROOT, "scripts", "initial_q.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["initial_q.py", "Breakout", "random", f"amn:{saved}"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["random", f"amn:{saved}"]
    states, _ = transfer.random_play_states("Breakout", "paper", 1024, 0, "vector")
    model, _ = transfer.build_initial_network(f"amn:{saved}", "Breakout")
    q = np.asarray(model(states, training=False)[0])[:, envs.legal_actions("Breakout")]
    assert lines[1].endswith(f"mean {np.mean(q.max(1) - q.min(1)):.3f}")


@pytest.mark.slow
def test_large_amn_transfers_end_to_end(tmp_path):
    """The authors' large AMN (4 convolutions, FC 2048, FC 1024) through export and init."""
    keras.mixed_precision.set_global_policy("float32")
    large = networks.build_network("large", 18, "amn")
    assert [layer.name for layer in large.layers if "conv" in layer.name] == ["conv1", "conv2", "conv3", "conv4"]
    assert large.get_layer("hidden1").units == 2048 and large.get_layer(networks.FEATURE_LAYER).units == 1024
    path = str(tmp_path / "large" / "1")
    export.export_multitask(large, ["Pong"], path, {"network": "large"}, "paper")
    copied, origin = transfer.build_initial_network(f"amn:{path}", "Breakout")
    assert origin["network"] == "large"
    for mine, theirs in zip(copied.get_weights(), large.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.slow
def test_eval_of_a_run_directory_that_exported_nothing_one_line(amn, tmp_path):
    _, saved, _ = amn
    run_dir = tmp_path / "run"
    done = run_main("--flagfile=flags/smoke.flags", "--mode=transfer", "--game=Breakout", "--init=random",
                    f"--run_dir={run_dir}", f"--export_dir={tmp_path / 'export'}",
                    "--training_steps=200", "--learning_starts=100", "--checkpoint_period=100")
    assert done.returncode == 0, done.stderr[-2000:]
    newest = sorted((run_dir / "checkpoints").iterdir())[-1]
    state = json.loads((newest / "state.json").read_text())
    assert state["finished"] and state["summary"]["export"].endswith("Breakout-random/1")
    unfinished = tmp_path / "unfinished"  # the same run as it stood before its final checkpoint
    shutil.copytree(run_dir, unfinished)
    shutil.rmtree(unfinished / "checkpoints" / newest.name)
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    shutil.copy(run_dir / "run.json", empty / "run.json")
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    shutil.move(tmp_path / "export", tmp_path / "export-elsewhere")
    cases = [(unfinished, "has not finished (step 100)"), (empty, "has no complete checkpoint yet"),
             (moved, "which no longer exists")]
    for path, message in cases:  # main's own error handling, in-process
        result = main_in_process("--mode=eval", f"--saved_model={path}", "--eval_episodes=1",
                                 f"--output_json={tmp_path / 'out.json'}")
        assert message in assert_clean_error(result), (path, result.stderr[-500:])
        assert not (tmp_path / "out.json").exists()


@pytest.mark.slow
def test_transfer_compare_script_trains_evaluates_and_reports(amn, tmp_path):
    """scripts/transfer_compare.sh end to end at a tiny budget: each AMN's rank_sources ranking,
    three inits trained two at a time, each run's export and random play evaluated, Table 2 with
    the SavedModel column and the rankings' predictions; rerunning it trains nothing and keeps
    the evaluations and rankings."""
    _, saved, _ = amn
    amns = {name: tmp_path / "amn" / name / "1" for name in ("policy", "feature")}
    for path in amns.values():
        shutil.copytree(saved, path)
    tiny_eval = "--eval_episodes=1 --eval_envs=1 --eval_max_steps=200"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHON=sys.executable, JOBS="2",
               RUN_ROOT=str(tmp_path / "runs"), EXPORT_DIR=str(tmp_path / "export"),
               REPORT_DIR=str(tmp_path / "report"), EVAL_FLAGS=tiny_eval,
               EXTRA_FLAGS="--training_steps=200 --learning_starts=100 --eval_period=100 "
                           "--checkpoint_period=100 --replay_capacity=1000 --num_envs=1 " + tiny_eval,
               REPORT_FLAGS="--report_blocks=2 --reach_score=-1", RANK_FLAGS=tiny_eval)
    command = ["bash", "scripts/transfer_compare.sh", "Breakout", str(amns["policy"]), str(amns["feature"]), "0"]
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    report = tmp_path / "report"
    labels = {"random": "random", "policy": "amn-policy", "feature": "amn-feature"}
    for name, label in labels.items():
        assert (tmp_path / "runs" / f"transfer-Breakout-{name}-seed0.log").exists()
        evaluated = json.loads((report / f"{name}-seed0-eval.json").read_text())
        assert evaluated["saved_model"] == os.path.join("transfer", f"Breakout-{label}", "1")
    table = (report / "table2.md").read_text()
    for label in labels.values():
        row = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
        assert "| 1 |" in row and not row.endswith(" - |")  # one seed, evaluated afterwards
    random_play = json.loads((report / "random-play-eval.json").read_text())["results"][0]["mean"]
    assert f"Random play (uniform legal actions): {random_play:.1f}." in table
    assert (report / "transfer_curves.png").read_bytes()[:4] == b"\x89PNG"
    predictions = table.split("`--mode=rank_sources` before training, against the runs")[1]
    for name, label in list(labels.items())[1:]:  # ranked before training, shown beside Table 2
        ranking = json.loads((report / f"rank_sources-{name}.json").read_text())
        assert ranking["init"] == f"amn:{amns[name]}" and ranking["target"] == "Breakout"
        assert {r["source"] for r in ranking["ranking"]} == {"Pong", "Boxing"}
        assert ranking["warning"] == (ranking["related"] == [])
        row = next(line for line in predictions.splitlines() if line.startswith(f"| {label} | "))
        assert f"| {'not faster (warning)' if ranking['warning'] else 'faster'} |" in row
    written = {p.name: p.stat().st_mtime_ns for p in report.glob("*.json")}
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("run already finished") == 3
    assert {p.name: p.stat().st_mtime_ns for p in report.glob("*.json")} == written
    # The run directories do not survive a new machine: nothing is trained again, and Table 2 is
    # made again from the records.
    table = (report / "table2.md").read_text()
    shutil.rmtree(tmp_path / "runs")
    remade = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert remade.returncode == 0, remade.stderr[-3000:]
    assert remade.stdout.count("not trained again") == 3 and not (tmp_path / "runs").exists()
    assert (report / "table2.md").read_text() == table
    assert sorted(p.name for p in (report / "runs").iterdir()) == sorted(
        f"transfer-Breakout-{name}-seed0" for name in labels)
    same = subprocess.run(["bash", "scripts/transfer_compare.sh", "Breakout", str(amns["policy"]),
                           str(amns["policy"]), "0"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert same.returncode == 2 and "both give the label 'policy'" in same.stderr
