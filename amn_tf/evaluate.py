"""``--mode=eval``: a SavedModel (or uniformly random play) played under the paper protocol
with the unbiased test play of ``evaluation.play``; one line per game, and the eval JSON
that ``--mode=report --report_evals`` reads.

Its episodes come from the eval stream of ``--seed`` (``seeds.eval_play``), a range of emulator
seeds no training test play reaches: a model chosen by its test plays (``--keep_best``, the best
of several runs) is scored here on episodes that did not choose it. The eval JSON names them
(``episodes``: stream, seed, first emulator seed).
"""

from __future__ import annotations

import shlex
import sys

from amn_tf import checkpoints, export, rundirs, seeds
from amn_tf.config import ConfigError
from amn_tf.evaluation import PlayProgress, in_parallel, play, saved_model_policy


def evaluate(config) -> dict:
    """Plays a SavedModel (every game it knows, or ``--game``) or random, printing a line per
    game; returns the eval JSON payload (who played: saved_model, kind; per-game results)."""
    if config.random_policy:
        games, loaded = [config.game], None
    else:
        loaded = export.LoadedPolicy(config.saved_model)
        games = [config.game] if config.game else loaded.games
        for game in games:
            loaded.game_id(game)  # clear error for a game the model was not trained on
        if config.store_test_play and loaded.kind != "expert":
            raise ConfigError(f"--store_test_play stores an expert's reference score; {config.saved_model} "
                              f"is a {loaded.kind} SavedModel")
    print(f"[eval] episodes: the eval stream of --seed={config.seed} (emulator seeds from "
          f"{seeds.eval_play(config.seed):,}), apart from every training test play")
    who = "random policy" if loaded is None else f"{loaded.kind} {config.saved_model}"

    def finished(_, result):  # each game's line as it finishes; the JSON keeps the games' order
        print(f"[eval] {who} | protocol {config.env.protocol} | epsilon "
              f"{config.evaluation.epsilon if loaded else 1.0} | {result.line()}", flush=True)

    policies = {game: None if loaded is None else saved_model_policy(loaded, game) for game in games}
    results = in_parallel([lambda game=game: _play(config, policies[game], game) for game in games], finished)
    if config.store_test_play:
        store_test_play(config, loaded, results[0])
    payload = {
        "saved_model": config.saved_model and rundirs.portable_path(config.saved_model, keep=3),
        "kind": "random" if loaded is None else loaded.kind,
        "games": [r.game for r in results],
        "random_policy": config.random_policy,
        "protocol": config.env.protocol,
        "epsilon": config.evaluation.epsilon if loaded else 1.0,
        "results": [r.as_dict() for r in results],
        "episodes": episodes(config),
    }
    # The run that trained it (a DQN's provenance), so a report can put the score beside that run.
    provenance = loaded.metadata.get("provenance", {}) if loaded is not None else {}
    if "run_dir" in provenance:  # exports made before runs were named portably hold an absolute path
        payload["run_dir"] = rundirs.portable_path(provenance["run_dir"])
    if "frames_trained" in provenance:
        payload["frames_trained"] = provenance["frames_trained"]
    return payload


EVAL_STREAM = "eval"


def episodes(config) -> dict:
    """Where ``--mode=eval``'s episodes come from: the eval stream of ``--seed`` (every game's
    emulators seeded from ``emulator_seed`` on, ``seeds.eval_play``), never a training test
    play's. Eval JSONs written before this field played from ``--seed`` itself."""
    return {"stream": EVAL_STREAM, "seed": config.seed, "emulator_seed": seeds.eval_play(config.seed)}


def _play(config, policy, game):
    """One play of ``game`` under the run's protocol on the eval stream of ``--seed``
    (``policy`` None: random), with progress lines while it lasts long."""
    who = "random policy" if policy is None else "eval"
    return play(policy, game, config.env.protocol, config.evaluation.episodes, config.evaluation.epsilon,
                config.evaluation.num_envs, config.evaluation.max_steps, seeds.eval_play(config.seed),
                config.env.backend, progress=PlayProgress(f"[eval] {game} ({who})"))


def store_test_play(config, loaded, result) -> str:
    """Plays uniformly random on the expert's game with the same seed and episodes (what
    ``--random_policy`` would give) and stores both results, with the protocol they were
    played under, in the SavedModel (``export.write_test_play``)."""
    game = result.game
    random_play = _play(config, None, game)
    print(f"[eval] random policy | protocol {config.env.protocol} | epsilon 1.0 | {random_play.line()}")
    path = export.write_test_play(config.saved_model, {
        "game": game, "protocol": config.env.protocol, "epsilon": config.evaluation.epsilon,
        "max_steps": config.evaluation.max_steps, "num_envs": config.evaluation.num_envs,
        "seed": config.seed, "episodes": episodes(config), "backend": config.env.backend,
        "expert": result.as_dict(), "random": random_play.as_dict(),
        "command": "python -m amn_tf.main " + shlex.join(sys.argv[1:]),
    })
    print(f"[eval] test play stored in {path}: AMN and multitask runs under this protocol take "
          "the expert's reference score from it")
    return path


def run(config) -> dict:
    """``--mode=eval``: ``evaluate``, then the payload written to ``--output_json`` (atomically)."""
    payload = evaluate(config)
    if config.output_json:
        checkpoints.write_json_atomically(config.output_json, payload)
        print(f"[eval] results written to {config.output_json}")
    return payload
