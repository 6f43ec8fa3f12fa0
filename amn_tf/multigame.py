"""Every game's batched environment and replay memory, stepped together: the acting side
shared by the AMN and the multitask DQN loops.

One step sends each game's actions (the emulators then run in their C++ threads while the
caller updates the learner), then receives every game's results into its memory.
"""

from __future__ import annotations

import numpy as np

from amn_tf import envs


class GamePlay:
    def __init__(self, games, memories, num_envs, protocol, seed, backend):
        self.games = list(games)
        self.memories = memories
        self.num_envs = num_envs
        self.seed = seed
        self.envs = [envs.make_env(g, num_envs, protocol, seed + 1000 * i, backend)
                     for i, g in enumerate(self.games)]
        self.streams = np.arange(num_envs)
        self.observations = []
        self.last_returns = {}  # game -> unclipped return of its latest finished episode
        self._actions = []

    def new_episodes(self, step: int, restored: bool = False) -> None:
        """Every env starts an episode seeded by ``step`` (deterministic runs do this at each
        checkpoint, so a resumed run sees what an uninterrupted one saw). ``restored``: the
        memories already hold these first observations (a restored deterministic checkpoint)."""
        self.observations = []
        for index, (memory, env) in enumerate(zip(self.memories, self.envs)):
            obs = env.reset(seed=self.seed + 1000 * index + step)
            if not restored:
                memory.start_episodes(self.streams, obs)
            self.observations.append(obs)

    def send(self, actions_per_game) -> None:
        self._actions = [np.asarray(a, np.int32) for a in actions_per_game]
        for env, actions in zip(self.envs, self._actions):
            env.send(actions)

    def recv(self) -> None:
        """Results of the last ``send`` into each game's memory; new episodes recorded."""
        for index, (env, memory) in enumerate(zip(self.envs, self.memories)):
            result = env.recv()
            memory.append(self.streams, self._actions[index], result.reward, result.terminated,
                          result.truncated, result.life_lost, result.final_obs)
            ended = result.terminated | result.truncated
            if ended.any():
                memory.start_episodes(self.streams[ended], result.obs[ended])
            self.observations[index] = result.obs
            for _, episode_return, _ in result.episode_returns:
                self.last_returns[self.games[index]] = episode_return

    def scores(self) -> str:
        return " ".join(f"{g} {self.last_returns.get(g, '-')}" for g in self.games)

    def close(self) -> None:
        for env in self.envs:
            env.close()
