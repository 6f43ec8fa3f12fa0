"""Epsilon-greedy test play against a live model or a SavedModel.

Test play follows the run's protocol except that a life loss never ends anything, and
returns are unclipped: the mean over *completed* episodes is the score.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from amn_tf import envs, faults


@dataclasses.dataclass
class EvalResult:
    game: str
    mean: float
    std: float
    max: float
    min: float
    episodes: int
    agent_steps: int
    returns: list

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def line(self) -> str:
        return (f"{self.game}: mean {self.mean:.1f} std {self.std:.1f} max {self.max:.1f} "
                f"over {self.episodes} episodes ({self.agent_steps * envs.FRAMES_PER_STEP:,} frames)")


def play(policy, game, protocol, episodes, epsilon, num_envs, max_steps, seed, backend="vector"):
    """Plays ``game`` until ``episodes`` episodes complete (or each env ran ``max_steps``).

    Args:
      policy: callable ``frames [N, 84, 84, 4] uint8 -> greedy ALE ids [N]``, or None for
        uniformly random legal actions.
    Returns:
      EvalResult over the first ``episodes`` completed episodes. If none completed within
      the cap, the running (partial) returns are reported, with ``episodes`` 0.
    """
    rng = np.random.default_rng(seed + 7919)
    num_envs = max(1, min(num_envs, episodes))
    env = envs.make_env(game, num_envs, protocol, seed, backend)
    try:
        legal = env.legal_actions
        obs = env.reset()
        returns, steps = [], 0
        partial = np.zeros(num_envs)
        for _ in range(max_steps):
            random_actions = envs.random_legal_actions(rng, legal, num_envs)
            if policy is None:
                actions = random_actions
            else:
                greedy = np.asarray(policy(obs), np.int32)
                explore = rng.random(num_envs) < epsilon
                actions = np.where(explore, random_actions, greedy).astype(np.int32)
            result = env.step(actions)
            steps += num_envs
            if steps == 2 * num_envs:
                faults.fault_point("evaluation")
            partial += result.reward
            for index, episode_return, _ in result.episode_returns:
                returns.append(episode_return)
                partial[index] = 0.0
            obs = result.obs
            if len(returns) >= episodes:
                break
    finally:
        env.close()
    game_name = envs.canonical_game(game)
    if not returns:
        values, count = partial.tolist(), 0
    else:
        values, count = returns[:episodes], len(returns[:episodes])
    array = np.asarray(values, np.float64)
    return EvalResult(game_name, float(array.mean()), float(array.std()), float(array.max()),
                      float(array.min()), count, steps, [float(v) for v in values])


def saved_model_policy(loaded, game):
    """Greedy ALE ids from a ``export.LoadedPolicy`` for ``game``."""
    return lambda frames: loaded.act(frames, game)


def evaluate(config) -> dict:
    """Plays a SavedModel (every game it knows, or ``--game``) or random, printing a line per
    game; returns the eval JSON payload (who played: saved_model, kind; per-game results)."""
    from amn_tf import export

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
    from amn_tf import checkpoints

    payload = evaluate(config)
    if config.output_json:
        checkpoints.write_json_atomically(config.output_json, payload)
        print(f"[eval] results written to {config.output_json}")
    return payload
