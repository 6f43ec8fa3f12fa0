"""An expert's test play stored in its SavedModel (``--mode=eval --store_test_play``) and read
back as the AMN's reference score instead of playing the expert again."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import main_in_process, run_main

from amn_tf import config, evaluation, experts, export

EVAL = ["--eval_episodes=2", "--eval_envs=2", "--eval_max_steps=120", "--seed=3"]
TEST_PLAY = config.EvalConfig(epsilon=0.05, episodes=2, max_steps=120, num_envs=2)


@pytest.fixture()
def expert(tmp_path, pong_expert) -> str:
    """A copy of the tiny Pong expert this test may write into."""
    path = tmp_path / "experts" / "Pong" / "1"
    shutil.copytree(pong_expert.path, path)
    return str(path)


@pytest.mark.slow
def test_store_test_play_keeps_the_expert_and_random_play_that_eval_gives(expert, tmp_path):
    stored = run_main("--mode=eval", f"--saved_model={expert}", *EVAL, "--store_test_play",
                      f"--output_json={tmp_path / 'expert.json'}")
    assert stored.returncode == 0, stored.stderr[-3000:]
    assert "test play stored in" in stored.stdout
    random = run_main("--mode=eval", "--random_policy", "--game=Pong", *EVAL,
                      f"--output_json={tmp_path / 'random.json'}")
    assert random.returncode == 0, random.stderr[-3000:]
    payload = export.read_test_play(expert)
    assert (payload["game"], payload["protocol"], payload["epsilon"], payload["max_steps"]) == (
        "Pong", "paper", 0.05, 120)
    # The same numbers as the two --mode=eval runs (same seed, episodes and cap).
    assert payload["expert"] == json.loads((tmp_path / "expert.json").read_text())["results"][0]
    assert payload["random"] == json.loads((tmp_path / "random.json").read_text())["results"][0]
    assert payload["expert"]["episodes"] == 2 and "--store_test_play" in payload["command"]
    # The SavedModel still loads and serves.
    assert export.LoadedPolicy(expert).kind == "expert"


def _write(expert, **changes) -> dict:
    expert_row = {"game": "Pong", "mean": 7.5, "std": 0.5, "max": 8.0, "min": 7.0, "episodes": 2,
                  "agent_steps": 240, "returns": [7.0, 8.0], "capped": 2}
    random_row = {**expert_row, "mean": -3.0, "max": -2.0, "min": -4.0, "returns": [-2.0, -4.0]}
    payload = {"game": "Pong", "protocol": "paper", "epsilon": 0.05, "max_steps": 120,
               "expert": expert_row, "random": random_row, **changes}
    export.write_test_play(expert, payload)
    return payload


def test_a_matching_stored_test_play_replaces_playing_the_expert(expert, tmp_path, monkeypatch, capsys):
    payload = _write(expert)
    loaded = export.LoadedPolicy(expert)

    def no_play(*args, **kwargs):
        raise AssertionError("the expert was played although its test play is stored")

    monkeypatch.setattr(evaluation, "play", no_play)
    reference, held_out = experts.measure_experts(str(tmp_path), ["Pong"], {"Pong": loaded}, "paper",
                                                  TEST_PLAY, 0, "vector", "amn")
    row = reference["Pong"]
    assert (row["mean"], row["max"], row["episodes"], row["random_mean"]) == (7.5, 8.0, 2, -3.0)
    assert row["returns"] == payload["expert"]["returns"]
    assert row["stored_test_play"].endswith("assets.extra/test_play.json")
    assert held_out["Pong"].shape == (experts.HELD_OUT_STATES, 84, 84, 4)  # still collected here
    assert "(stored test play: " in capsys.readouterr().out
    assert json.loads((tmp_path / "experts.json").read_text())["Pong"]["mean"] == 7.5


@pytest.mark.parametrize("changes, reason", [
    ({"max_steps": 27000}, "max_steps 27000 (this run: 120)"),
    ({"epsilon": 0.0}, "epsilon 0.0 (this run: 0.05)"),
    ({"protocol": "authors"}, "protocol authors (this run: paper)"),
    ({"remeasure": True}, None),
    ({"corrupt": True}, "is unreadable"),
])
def test_a_stored_test_play_that_does_not_match_is_not_used(expert, tmp_path, monkeypatch, capsys,
                                                            changes, reason):
    remeasure = changes.pop("remeasure", False)
    if changes.pop("corrupt", False):
        _write(expert)
        with open(f"{expert}/{export.TEST_PLAY_FILE}", "w") as handle:
            handle.write('{"format": "amn_tf/test_play/1", "game": ')  # cut short
    else:
        _write(expert, **changes)
    played = []

    def counted_play(policy, game, *args, **kwargs):
        played.append(policy is None)
        return evaluation.EvalResult(game, 1.0, 0.0, 1.0, 1.0, 2, 10, [1.0, 1.0])

    monkeypatch.setattr(evaluation, "play", counted_play)
    # Held-out states are collected whatever the stored test play says (the test above checks
    # all 256 of them); none here, where only the reference score is in question.
    reference, held_out = experts.measure_experts(str(tmp_path), ["Pong"], {"Pong": export.LoadedPolicy(expert)},
                                                  "paper", TEST_PLAY, 0, "vector", "amn", remeasure=remeasure,
                                                  held_out_states=0)
    assert held_out == {} and not (tmp_path / "held_out.npz").exists()
    assert played == [False, True]  # the expert, then random play
    assert reference["Pong"]["mean"] == 1.0 and "stored_test_play" not in reference["Pong"]
    out = capsys.readouterr().out
    if reason:
        assert reason in out, out
    else:
        assert "stored test play" not in out


def test_too_few_stored_episodes_are_not_used(expert, tmp_path, capsys):
    _write(expert)
    more = config.EvalConfig(epsilon=0.05, episodes=30, max_steps=120, num_envs=2)
    assert experts.stored_test_play(export.LoadedPolicy(expert), "Pong", "paper", more, "amn") is None
    assert "2 episodes (this run: 30)" in capsys.readouterr().out


def test_store_test_play_refuses_what_is_not_an_expert(tmp_path):
    result = main_in_process("--mode=eval", "--random_policy", "--game=Pong", "--store_test_play")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("amn_tf: error: --store_test_play needs")
