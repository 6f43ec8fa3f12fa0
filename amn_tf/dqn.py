"""``--mode=dqn``: train an expert DQN on one game (``dqn_agent.DqnAgent`` run by
``runner.launch``); rerunning the same command resumes it."""

from __future__ import annotations

from amn_tf import dqn_agent, rundirs, runner


def train(config) -> dict:
    """Trains (or resumes) ``config.game``'s DQN in ``config.run_dir``; returns the run's
    summary (final test play, export)."""
    return runner.launch(config.run_dir, {"mode": "dqn", "game": config.game}, config,
                         dqn_agent.schedule(config), lambda _: dqn_agent.DqnAgent(config),
                         fixed=rundirs.DQN_FIXED_FLAGS, replay_flags=rundirs.DQN_REPLAY_FLAGS)
