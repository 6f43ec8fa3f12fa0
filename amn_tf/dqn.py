"""``--mode=dqn``: train an expert DQN on one game (``dqn_agent.DqnAgent`` run by
``runner.Runner``); rerunning the same command resumes it."""

from __future__ import annotations

from amn_tf import dqn_agent, runtime


@runtime.releases_run_dirs
def train(config) -> dict:
    """Claims ``config.run_dir`` for this game (or checks it holds this game's run), records
    the resolved flags, and trains; returns the run's summary (final test play, export)."""
    runtime.prepare_run_dir(config.run_dir, {"mode": "dqn", "game": config.game}, config.flags,
                            fixed=runtime.LATER_FLAGS, replay_flags=runtime.DQN_REPLAY_FLAGS)
    return dqn_agent.train(config)
