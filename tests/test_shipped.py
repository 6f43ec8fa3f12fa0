"""The SavedModels shipped in saved_models/: they load, say what they are, stay small, and
the README's main job (--mode=amn on them) runs (here on a tiny budget)."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from amn_tf import envs, export, rundirs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "saved_models", "experts", "*", "*")))


def test_at_least_one_expert_is_shipped():
    assert SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: os.path.relpath(p, ROOT))
def test_shipped_expert_loads_and_matches_its_card(path):
    game = os.path.basename(os.path.dirname(path))
    loaded = export.LoadedPolicy(path)
    assert loaded.kind == "expert" and loaded.games == [game]
    assert _size(path) < 10 * 2**20
    frames = np.random.default_rng(0).integers(0, 255, (3, 84, 84, 4), dtype=np.uint8)
    out = loaded.outputs(frames, game)
    assert out["q_values"].shape == (3, len(envs.legal_actions(game)))
    assert set(out["action"].numpy()) <= set(envs.legal_actions(game).tolist())
    with open(os.path.join(path, "assets", "amn_tf.json")) as handle:
        assert json.load(handle)["provenance"]["frames_trained"] > 0
    with open(os.path.join(ROOT, "saved_models", "README.md")) as handle:
        assert f"| {game} |" in handle.read()  # it has a model card row


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: os.path.relpath(p, ROOT))
def test_shipped_expert_stores_the_test_play_of_its_card(path):
    """The main job takes each expert's reference score from its stored test play: the same
    30-episode paper-protocol play (expert and random) as the card's eval JSONs."""
    game = os.path.basename(os.path.dirname(path))
    stored = export.read_test_play(path)
    assert stored is not None, f"no {export.TEST_PLAY_FILE} in {path}"
    assert (stored["game"], stored["protocol"], stored["epsilon"], stored["max_steps"]) == (
        game, "paper", 0.05, 27_000)
    assert stored["expert"]["episodes"] == stored["random"]["episodes"] == 30
    card = card_results(game)
    for who in ("expert", "random"):
        assert stored[who] == card[who]


def card_results(game) -> dict:
    """'expert' and 'random' -> the game's results in the eval JSONs its card cites."""
    results = {}
    for who in ("expert", "random"):
        with open(os.path.join(ROOT, "docs", "results", "experts", f"{game}-{who}.json")) as handle:
            results[who] = json.load(handle)["results"][0]
    return results


# The bar a shipped expert must meet over its card's 30 episodes: 3x uniform random play, or a
# fixed score where random play is at (or below) zero or the game has a customary bar.
FIXED_BARS = {"Pong": 15.0, "Breakout": 20.0, "Enduro": 100.0}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: os.path.relpath(p, ROOT))
def test_shipped_expert_meets_its_bar(path):
    game = os.path.basename(os.path.dirname(path))
    scores = card_results(game)
    assert scores["expert"]["episodes"] == 30
    bar = FIXED_BARS.get(game, 3 * scores["random"]["mean"])
    assert scores["expert"]["mean"] >= bar > scores["random"]["mean"], (game, scores["expert"]["mean"], bar)


@pytest.mark.slow
def test_main_job_distills_the_shipped_experts(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "amn_tf.main", "--flagfile=flags/amn_smoke.flags",
         f"--run_dir={tmp_path / 'run'}", f"--export_dir={tmp_path / 'export'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # The paper's eight Table 1 games, all shipped; the other shipped experts (DemonAttack) left out.
    for game in envs.TABLE1_GAMES:
        assert f"| {game} |" in result.stdout
    for path in SHIPPED:
        game = os.path.basename(os.path.dirname(path))
        assert (f"| {game} |" in result.stdout) == (game in envs.TABLE1_GAMES), game
    assert "SavedModel:" in result.stdout


def test_every_table1_game_has_a_shipped_expert():
    shipped = {os.path.basename(os.path.dirname(p)) for p in SHIPPED}
    assert set(envs.TABLE1_GAMES) <= shipped, sorted(set(envs.TABLE1_GAMES) - shipped)


def _carded(heading, kind_dir):
    """The SavedModels saved_models/README.md has a card for (``## <heading>
    (`<kind_dir>/<name>/<version>/`)``): the shipped ones, not those a user's own runs export
    next to them."""
    import re

    with open(os.path.join(ROOT, "saved_models", "README.md")) as handle:
        names = re.findall(rf"^## {heading} \(`{kind_dir}/([^/`]+/[0-9]+)/`\)", handle.read(), re.MULTILINE)
    return [os.path.join(ROOT, "saved_models", kind_dir, name) for name in names]


def _card(heading, path, kind_dir):
    """The text of the card of the SavedModel at ``path`` (up to the next heading)."""
    with open(os.path.join(ROOT, "saved_models", "README.md")) as handle:
        name = os.path.relpath(path, os.path.join(ROOT, "saved_models", kind_dir))
        return handle.read().split(f"## {heading} (`{kind_dir}/{name}/`)", 1)[1].split("\n## ", 1)[0]


def _size(path) -> int:
    return sum(os.path.getsize(f) for f in glob.glob(os.path.join(path, "**"), recursive=True)
               if os.path.isfile(f))


AMNS = _carded("AMN", "amn")


def test_every_carded_amn_is_shipped():
    assert AMNS and all(os.path.isdir(path) for path in AMNS)


@pytest.mark.parametrize("path", AMNS, ids=lambda p: os.path.relpath(p, ROOT))
def test_shipped_amn_plays_every_shipped_game(path):
    loaded = export.LoadedPolicy(path)
    assert loaded.kind == "amn"
    # Distilled from shipped experts only, but not necessarily all of them: a transfer source
    # leaves its target games out (the Breakout expert is shipped; the AMNs that transfer to
    # Breakout must not have seen it), and its card names the games it was distilled from.
    shipped_games = {os.path.basename(os.path.dirname(p)) for p in SHIPPED}
    assert set(loaded.games) <= shipped_games, sorted(set(loaded.games) - shipped_games)
    card = _card("AMN", path, "amn")
    for game in loaded.games:
        assert game in card, f"the card of {path} does not name {game}"
    assert _size(path) < 10 * 2**20
    frames = np.random.default_rng(0).integers(0, 255, (3, 84, 84, 4), dtype=np.uint8)
    for game in loaded.games:
        actions = loaded.act(frames, game)
        assert set(np.asarray(actions).tolist()) <= set(envs.legal_actions(game).tolist())
    with open(os.path.join(path, "assets", "amn_tf.json")) as handle:
        assert json.load(handle)["provenance"]["frames_trained_per_game"] > 0


TRANSFERS = _carded("Transfer", "transfer")


@pytest.mark.parametrize("path", TRANSFERS, ids=lambda p: os.path.relpath(p, ROOT))
def test_shipped_transfer_dqn_is_the_model_its_card_scores(path):
    """A shipped transferred DQN plays its target game, and the eval JSON its card cites
    (``docs/results/transfer-<Game>/<...>-eval.json``) was made from this very model: the same
    training run and frames in the SavedModel's provenance."""
    import re

    loaded = export.LoadedPolicy(path)
    assert loaded.kind == "transfer" and len(loaded.games) == 1
    game = loaded.games[0]
    assert _size(path) < 10 * 2**20
    frames = np.random.default_rng(0).integers(0, 255, (3, 84, 84, 4), dtype=np.uint8)
    assert set(loaded.act(frames, game).tolist()) <= set(envs.legal_actions(game).tolist())
    card = _card("Transfer", path, "transfer")
    cited = re.findall(rf"docs/results/transfer-{game}/[^`\s]+-eval\.json", card)
    assert cited, f"the card of {path} cites no eval JSON under docs/results/transfer-{game}/"
    with open(os.path.join(ROOT, cited[0])) as handle:
        scored = json.load(handle)
    provenance = loaded.metadata["provenance"]
    assert (scored["run_dir"], scored["frames_trained"]) == (
        rundirs.portable_path(provenance["run_dir"]), provenance["frames_trained"])
    assert scored["results"][0]["episodes"] == 30
    assert f"{scored['results'][0]['mean']:.1f}" in card  # the card states the score it cites


ALL_SHIPPED = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(ROOT, "saved_models", "*", "*", "*", "saved_model.pb")))


@pytest.mark.parametrize("path", ALL_SHIPPED, ids=lambda p: os.path.relpath(p, ROOT))
def test_shipped_metadata_names_no_directory_of_the_training_machine(path):
    """What a shipped model says about where it came from (its run, the experts it was
    distilled from, its flags, its test play's command) is named relative to the project or by
    name (``scripts/portable_metadata.py``): no absolute path of the machine that trained it;
    and the metadata variable and its asset say the same."""
    loaded = export.LoadedPolicy(path)
    with open(os.path.join(path, "assets", export.METADATA_FILE)) as handle:
        assert json.load(handle) == loaded.metadata
    assert rundirs.portable_record(loaded.metadata) == loaded.metadata
    play = export.read_test_play(path)
    assert play is None or rundirs.portable_record(play) == play
