"""``--mode=eval``: a SavedModel (or uniformly random play) played under the paper protocol
with the unbiased test play of ``evaluation.play``; one line per game, and the eval JSON
that ``--mode=report --report_evals`` reads."""

from __future__ import annotations

from amn_tf import checkpoints, export
from amn_tf.evaluation import play, saved_model_policy


def evaluate(config) -> dict:
    """Plays a SavedModel (every game it knows, or ``--game``) or random, printing a line per
    game; returns the eval JSON payload (who played: saved_model, kind; per-game results)."""
    results = []
    if config.random_policy:
        games, loaded = [config.game], None
    else:
        loaded = export.LoadedPolicy(config.saved_model)
        games = [config.game] if config.game else loaded.games
        for game in games:
            loaded.game_id(game)  # clear error for a game the model was not trained on
    for game in games:
        policy = None if loaded is None else saved_model_policy(loaded, game)
        result = play(policy, game, config.env.protocol, config.evaluation.episodes,
                      config.evaluation.epsilon, config.evaluation.num_envs,
                      config.evaluation.max_steps, config.seed, config.env.backend)
        who = "random policy" if loaded is None else f"{loaded.kind} {config.saved_model}"
        print(f"[eval] {who} | protocol {config.env.protocol} | epsilon "
              f"{config.evaluation.epsilon if loaded else 1.0} | {result.line()}")
        results.append(result)
    return {
        "saved_model": config.saved_model,
        "kind": "random" if loaded is None else loaded.kind,
        "games": [r.game for r in results],
        "random_policy": config.random_policy,
        "protocol": config.env.protocol,
        "epsilon": config.evaluation.epsilon if loaded else 1.0,
        "results": [r.as_dict() for r in results],
    }


def run(config) -> dict:
    """``--mode=eval``: ``evaluate``, then the payload written to ``--output_json`` (atomically)."""
    payload = evaluate(config)
    if config.output_json:
        checkpoints.write_json_atomically(config.output_json, payload)
        print(f"[eval] results written to {config.output_json}")
    return payload
